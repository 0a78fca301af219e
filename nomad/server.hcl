# A Nomad server of an agenthost cluster (three of them form the raft quorum).
# infra/nomad-cluster.sh server renders the two placeholders and installs this as
# /etc/nomad.d/server.hcl; keep the gossip key and the ACL bootstrap token out of the repo.
data_dir  = "/var/lib/nomad"
bind_addr = "0.0.0.0"
datacenter = "dc1"

advertise {
  http = "__ADDR__"
  rpc  = "__ADDR__"
  serf = "__ADDR__"
}

server {
  enabled          = true
  bootstrap_expect = 3

  server_join {
    retry_join = [__SERVERS__]
  }
}

acl {
  # Tokens on: agenthost's operator token needs the policy in nomad/agenthost-policy.hcl.
  enabled = true
}

telemetry {
  publish_allocation_metrics = true
  publish_node_metrics       = true
}
