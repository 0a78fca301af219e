# A Nomad server of an agenthost cluster (three of them form the raft quorum).
# infra/nomad-cluster.sh server renders the placeholders and installs this as
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
  # Gossip encryption: the same key on every server (nomad operator gossip keyring generate).
  encrypt          = "__GOSSIP_KEY__"

  server_join {
    retry_join = [__SERVERS__]
  }
}

acl {
  # Tokens on: agenthost's token has the policy in nomad/agenthost-policy.hcl, in the namespace agenthost.
  enabled = true
}

# Mutual TLS on HTTP and RPC (nomad/README.md, "Security"): the cluster's CA and this agent's certificate,
# which names its role (server.<region>.nomad, as verify_server_hostname requires) and its address.
tls {
  http                   = true
  rpc                    = true
  ca_file                = "/etc/nomad.d/tls/ca.pem"
  cert_file              = "/etc/nomad.d/tls/agent.pem"
  key_file               = "/etc/nomad.d/tls/agent-key.pem"
  verify_server_hostname = true
  verify_https_client    = true
}

telemetry {
  publish_allocation_metrics = true
  publish_node_metrics       = true
}
