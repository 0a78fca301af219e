# One agenthost workload as a Nomad job: a service, a database (a service with a Docker volume),
# a sandbox or a build step (batch). The backend submits this file unchanged to /v1/jobs/parse
# with typed variable values, so nothing an agent sends is ever spliced into HCL text. Job id,
# name, namespace and meta are set on the parsed JSON.
#
# Env values never appear here: they live in the Nomad Variable nomad/jobs/<job id> (readable by
# this job's tasks through workload identity) and reach the task through the template below.

variable "job_type" {
  type        = string
  description = "service or batch"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "node_pool" {
  type    = string
  default = "default"
}

variable "image" {
  type = string
}

variable "command" {
  type        = list(string)
  default     = []
  description = "argv replacing the image's command; empty keeps it"
}

variable "entrypoint" {
  type    = list(string)
  default = []
}

variable "runtime" {
  type    = string
  default = "runsc"
}

variable "ports" {
  type        = list(number)
  default     = []
  description = "container ports, each published on a dynamic port of the node address"
}

variable "memory_mb" {
  type        = number
  description = "memory reserved on the node; the hard limit unless memory_max_mb is set"
}

variable "memory_max_mb" {
  type        = number
  default     = 0
  description = "the hard memory limit above the reservation (needs the scheduler's memory oversubscription)"
}

variable "cpu_mhz" {
  type        = number
  description = "CPU reserved, in MHz of the slowest eligible node's cores; the container's CPU weight"
}

variable "cpu_hard_limit" {
  type        = bool
  default     = true
  description = "cap the container at cpu_mhz (the docker driver derives the CFS quota from the reservation)"
}

variable "pids_limit" {
  type    = number
  default = 256
}

variable "readonly_rootfs" {
  type    = bool
  default = true
}

variable "tmpfs" {
  type    = list(object({ path = string, size_bytes = number }))
  default = []
}

variable "cap_add" {
  type    = list(string)
  default = []
}

variable "user" {
  type    = string
  default = ""
}

variable "workdir" {
  type    = string
  default = ""
}

variable "network_mode" {
  type        = string
  default     = "isolated"
  description = <<-EOT
  isolated: the node's agenthost bridge (meta agenthost.docker-network); none: no network; the
  tenant network's name (equal to tenant_network)
  EOT
}

variable "hostname" {
  type    = string
  default = ""
}

variable "network_aliases" {
  type        = list(string)
  default     = []
  description = "names other workloads on the tenant network reach this one by"
}

variable "tenant_network" {
  type        = string
  default     = ""
  description = "the tenant's Docker bridge on the node, created by the net prestart task when missing"
}

variable "helper_image" {
  type        = string
  default     = ""
  description = "image of the net prestart task (the platform's python image)"
}

variable "helper_args" {
  type        = list(string)
  default     = []
  description = "argv of the net prestart task (the backend's own script, never agent input)"
}

variable "docker_socket" {
  type    = string
  default = "/var/run/docker.sock"
}

variable "node_id" {
  type        = string
  default     = ""
  description = "pin to this node: where the volumes are, or the tenant's node (tenant networks)"
}

variable "init" {
  type        = bool
  default     = false
  description = "a tiny init as pid 1 that reaps zombies"
}

variable "volumes" {
  type        = list(object({ source = string, path = string, read_only = bool, labels = map(string) }))
  default     = []
  description = "Docker named volumes of the node; labels mark one the node's dockerd makes on first use"
}

variable "service_name" {
  type    = string
  default = ""
}

variable "check_type" {
  type        = string
  default     = "none"
  description = "http, tcp or none: the Nomad service check on the first port"
}

variable "check_path" {
  type    = string
  default = "/"
}

variable "update_canary" {
  type        = number
  default     = 0
  description = "1: an update starts the new version beside the old one (no volumes); 0: it replaces it"
}

variable "update_health" {
  type        = string
  default     = "task_states"
  description = "checks (the service's Nomad check passes) or task_states (the task runs)"
}

variable "update_min_healthy_s" {
  type    = number
  default = 3
}

variable "update_healthy_deadline_s" {
  type        = number
  default     = 45
  description = "how long a new allocation may take to become healthy (the platform's readiness timeout)"
}

variable "restart_attempts" {
  type    = number
  default = 5
}

variable "kill_timeout_s" {
  type    = number
  default = 10
}

job "workload" {
  type        = var.job_type
  datacenters = var.datacenters
  node_pool   = var.node_pool

  # Only nodes whose docker plugin allows the runtime (client meta agenthost.runtimes).
  constraint {
    attribute = "$${meta.agenthost.runtimes}"
    operator  = "set_contains"
    value     = var.runtime
  }

  dynamic "constraint" {
    for_each = var.network_mode == "isolated" ? [1] : []
    content {
      attribute = "$${meta.agenthost.docker-network}"
      operator  = "is_set"
    }
  }

  # The net prestart task is platform code run with runc (it talks to the node's Docker socket).
  dynamic "constraint" {
    for_each = var.tenant_network != "" ? [1] : []
    content {
      attribute = "$${meta.agenthost.runtimes}"
      operator  = "set_contains"
      value     = "runc"
    }
  }

  dynamic "constraint" {
    for_each = var.node_id != "" ? [1] : []
    content {
      attribute = "$${node.unique.id}"
      value     = var.node_id
    }
  }

  group "main" {
    count = 1

    # The orchestrator decides what happens after a crash (circuit breaker): Nomad restarts in
    # place up to the limit and never reschedules on its own.
    restart {
      attempts = var.restart_attempts
      interval = "168h"
      delay    = "1s"
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    # Updates are Nomad deployments: the new version (a canary beside the old one when there are no
    # volumes) must become healthy, then it is promoted; else Nomad reverts the job to its last stable
    # version. Batch jobs have no deployments.
    dynamic "update" {
      for_each = var.job_type == "service" ? [1] : []
      content {
        max_parallel      = 1
        canary            = var.update_canary
        auto_promote      = var.update_canary > 0
        auto_revert       = true
        health_check      = var.update_health
        min_healthy_time  = "${var.update_min_healthy_s}s"
        healthy_deadline  = "${var.update_healthy_deadline_s}s"
        progress_deadline = "${var.update_healthy_deadline_s + 30}s"
      }
    }

    dynamic "network" {
      for_each = length(var.ports) > 0 ? [1] : []
      content {
        dynamic "port" {
          for_each = var.ports
          labels   = ["p${port.value}"]
          content {
            to = port.value
          }
        }
      }
    }

    dynamic "service" {
      for_each = var.service_name != "" && length(var.ports) > 0 ? [1] : []
      content {
        name     = var.service_name
        provider = "nomad"
        port     = "p${var.ports[0]}"

        dynamic "check" {
          for_each = var.check_type == "none" ? [] : [1]
          content {
            type     = var.check_type
            path     = var.check_type == "http" ? var.check_path : ""
            # Nomad's check is the service's readiness (a first deploy waits for it): often, so a deploy
            # is not kept waiting (Nomad's floor is 1 s; its first run is half an interval in).
            interval = "1s"
            timeout  = "2s"
          }
        }
      }
    }

    # Creates the tenant's bridge on this node when it is missing, then exits; main starts after it.
    dynamic "task" {
      for_each = var.tenant_network != "" ? [1] : []
      labels   = ["net"]
      content {
        driver = "docker"
        # The socket is root's: root in its container, with no capabilities and no network.
        user = "root"

        lifecycle {
          hook    = "prestart"
          sidecar = false
        }

        config {
          image           = var.helper_image
          runtime         = "runc"
          args            = var.helper_args
          network_mode    = "none"
          readonly_rootfs = true
          cap_drop        = ["all"]
          security_opt    = ["no-new-privileges"]
          pids_limit      = 32
          volumes         = ["${var.docker_socket}:/var/run/docker.sock"]
        }

        resources {
          memory = 48
          cpu    = 50
        }
      }
    }

    task "main" {
      driver       = "docker"
      user         = var.user
      kill_timeout = "${var.kill_timeout_s}s"

      config {
        image           = var.image
        runtime         = var.runtime
        args            = var.command
        # Empty, the backend drops it from the parsed job: an empty list resets the image's entrypoint.
        entrypoint      = var.entrypoint
        ports           = [for p in var.ports : "p${p}"]
        readonly_rootfs = var.readonly_rootfs
        cap_drop        = ["all"]
        cap_add         = var.cap_add
        security_opt    = ["no-new-privileges"]
        pids_limit      = var.pids_limit
        cpu_hard_limit  = var.cpu_hard_limit
        work_dir        = var.workdir
        network_mode    = var.network_mode == "isolated" ? "$${meta.agenthost.docker-network}" : var.network_mode
        network_aliases = var.network_aliases
        hostname        = var.hostname
        init            = var.init
        mount = concat(
          [for t in var.tmpfs : {
            type     = "tmpfs"
            target   = t.path
            readonly = false
            tmpfs_options = {
              size = t.size_bytes
            }
          }],
          # Made by the node's dockerd on first use and then copied from the image's directory at
          # that path, owner included (a database's data dir is its engine user's), as on Docker.
          [for v in var.volumes : {
            type     = "volume"
            source   = v.source
            target   = v.path
            readonly = v.read_only
            volume_options = {
              no_copy = false
              labels  = [v.labels]
            }
          }],
        )
      }

      # Env from the job's Nomad Variable, one JSON-quoted value per line (the env file format
      # Nomad reads takes JSON escapes, so newlines or quotes in a value cannot add variables).
      # Keys under AGENTHOST_ are the backend's own bookkeeping, not env.
      template {
        destination = "secrets/env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
        {{- with nomadVar (printf "nomad/jobs/%s" (env "NOMAD_JOB_ID")) -}}
        {{- range .Tuples -}}
        {{- if not (.K | regexMatch "^AGENTHOST_") }}
        {{ .K }}={{ .V | toUnescapedJSON }}
        {{- end -}}
        {{- end -}}
        {{- end }}
        EOT
      }

      resources {
        memory     = var.memory_mb
        memory_max = var.memory_max_mb
        cpu        = var.cpu_mhz
      }
    }
  }
}
