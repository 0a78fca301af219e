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

    # Workload volumes are Docker named volumes; the platform's own tasks mount the Docker socket.
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
