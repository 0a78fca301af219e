# ACL policy for the token agenthost uses (AGENTHOST_NOMAD_TOKEN / NOMAD_TOKEN):
#   nomad acl policy apply -description "agenthost platform" agenthost nomad/agenthost-policy.hcl
#   nomad acl token create -name agenthost -policy agenthost
namespace "default" {
  policy       = "write"
  capabilities = ["parse-job", "submit-job", "read-job", "alloc-exec", "read-logs"]

  variables {
    path "nomad/jobs/ah-*" {
      capabilities = ["write", "read", "destroy", "list"]
    }
    path "agenthost/*" {
      capabilities = ["write", "read", "destroy", "list"]
    }
  }
}

node {
  # list_nodes and set_node_eligibility
  policy = "write"
}

agent {
  policy = "read"
}

operator {
  policy = "read"
}
