# A Nomad client of an agenthost cluster: docker driver with gVisor (runsc) and, where installed,
# Sysbox. infra/nomad-cluster.sh client renders the placeholders and installs this as
# /etc/nomad.d/client.hcl after it created the agenthost bridge (inter-container traffic off).
data_dir   = "/var/lib/nomad"
bind_addr  = "0.0.0.0"
datacenter = "dc1"

advertise {
  http = "__ADDR__"
  rpc  = "__ADDR__"
  serf = "__ADDR__"
}

client {
  enabled = true
  # Published ports land on this address (the node address agents see in service URLs).
  network_interface = "__IFACE__"

  server_join {
    retry_join = [__SERVERS__]
  }

  options {
    # Every task runs in a container: no raw_exec, exec or java.
    "driver.allowlist" = "docker"
    # Cloud metadata probes; drop the ones for the cloud these nodes run on.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }

  meta {
    # Must equal allow_runtimes below: the backend schedules runtimes by this list.
    "agenthost.runtimes"       = "__RUNTIMES__"
    "agenthost.docker-network" = "ah-nomad"
  }
}

plugin "docker" {
  config {
    allow_runtimes = [__RUNTIMES_LIST__]

    # agenthost's tasks drop every capability; only the backup job (restic, runc) adds back chown,
    # dac_override and fowner, to restore files with their owners and modes. A job asking for any other
    # one, or for a privileged container, is refused here whoever submitted it.
    allow_privileged = false
    allow_caps       = ["chown", "dac_override", "fowner"]

    # Workload volumes are Docker named volumes and the platform's own tasks mount the Docker socket:
    # both need volumes on (nomad/README.md, "Security", says what that means for agenthost's token).
    volumes {
      enabled = true
    }

    gc {
      image       = true
      image_delay = "1h"
      container   = true
    }
  }
}

# Mutual TLS on HTTP and RPC (nomad/README.md, "Security"): the cluster's CA and this agent's certificate,
# which names its role (client.<region>.nomad, as verify_server_hostname requires) and its address.
tls {
  http                   = true
  rpc                    = true
  ca_file                = "/etc/nomad.d/tls/ca.pem"
  cert_file              = "/etc/nomad.d/tls/agent.pem"
  key_file               = "/etc/nomad.d/tls/agent-key.pem"
  verify_server_hostname = true
  verify_https_client    = true
}
