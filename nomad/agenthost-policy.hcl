# ACL policy of the token agenthost uses (AGENTHOST_NOMAD_TOKEN / NOMAD_TOKEN): its own namespace and
# nothing else of the cluster's jobs; nomad/README.md ("Security") says why each rule is here.
#   nomad namespace apply -description "agenthost's jobs and Variables" agenthost
#   nomad acl policy apply -description "agenthost platform" agenthost nomad/agenthost-policy.hcl
#   nomad acl token create -name agenthost -type client -policy agenthost
# A platform in another namespace (AGENTHOST_NOMAD_NAMESPACE) needs this file with that namespace's name.
namespace "agenthost" {
  # No coarse "policy": only the capabilities agenthost calls. Not granted: dispatch-job (no parameterized
  # jobs), scale-job, csi-*, alloc-node-exec, sentinel-override.
  capabilities = [
    "list-jobs",       # list_workloads, the reconciler, orphan GC (jobs by meta)
    "parse-job",       # every job is parsed from nomad/*.nomad.hcl by /v1/jobs/parse
    "read-job",        # job, allocations, evaluations and deployments of a workload
    "submit-job",      # register / stop / purge jobs; revert and promote deployments
    "alloc-exec",      # exec, SSH sessions, the exec wrapper's killer
    "alloc-lifecycle", # stop or restart one allocation (restart_service)
    "read-logs",       # service_logs, build output
    "read-fs",         # the output files of the platform's own batch jobs (volume and backup jobs)
  ]

  variables {
    # A workload's env (reached by its tasks through workload identity and a template).
    path "nomad/jobs/ah-*" {
      capabilities = ["write", "read", "destroy", "list"]
    }
    # The platform's own records (volumes and the node that holds each, per instance).
    path "agenthost/*" {
      capabilities = ["write", "read", "destroy", "list"]
    }
  }
}

# Every other namespace: nothing (the default when no rule matches; said here so that nobody widens it by
# accident with a "*" rule).
namespace "*" {
  policy = "deny"
}

# agenthost declares no Nomad host volumes (its volumes are Docker named volumes): none may be mounted.
host_volume "*" {
  policy = "deny"
}

node {
  # list_nodes, placement and capacity (read); set_node_eligibility and drain_node (write).
  policy = "write"
}

node_pool "*" {
  # The configured pool's scheduler configuration (memory oversubscription) is read from the pool list.
  policy = "read"
}

agent {
  # platform_status: version, region, leader (/v1/agent/self).
  policy = "read"
}

operator {
  # The scheduler configuration (memory oversubscription decides what a job reserves).
  policy = "read"
}
