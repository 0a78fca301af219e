# The dev agent the test suite runs against: one process that is server and client,
# bound to loopback on ports clear of Nomad's defaults, docker driver with runc and runsc.
#   infra/nomad.sh start   (runs: nomad agent -dev -config nomad/dev.hcl -data-dir ...)
bind_addr            = "127.0.0.1"
log_level            = "INFO"
disable_update_check = true

ports {
  http = 14646
  rpc  = 14647
  serf = 14648
}

advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

server {
  # Workloads reserve a share of their memory and may use all of it (memory_max, docs/backends.md):
  # the backend reads this setting from the scheduler configuration and reserves it all where it is off.
  default_scheduler_config {
    memory_oversubscription_enabled = true
  }
}

client {
  enabled           = true
  network_interface = "lo"
  # Dynamic host ports stay below Linux's ephemeral range (32768+), where the Docker
  # backend's published ports and test servers live.
  min_dynamic_port = 20000
  max_dynamic_port = 32000

  options {
    # No cloud metadata services here (and their probes fail the client setup).
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }

  meta {
    # What the docker plugin below allows; the backend intersects it with what dockerd has.
    "agenthost.runtimes" = "runc,runsc"
    # Tenant containers join this bridge (inter-container traffic off); infra/nomad.sh creates it.
    "agenthost.docker-network" = "ah-nomad-dev"
  }
}

plugin "docker" {
  config {
    allow_runtimes = ["runc", "runsc"]

    # Workload volumes are Docker named volumes; the platform's own tasks mount the Docker socket.
    volumes {
      enabled = true
    }

    gc {
      # The engine is shared: never delete images, and leave containers Nomad did not start alone.
      image     = false
      container = true
      dangling_containers {
        enabled = false
      }
    }
  }
}
