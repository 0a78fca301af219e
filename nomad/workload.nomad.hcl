# One agenthost workload as a Nomad job: a service, a database (a service with host volumes),
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
  type = number
}

variable "cpu_mhz" {
  type        = number
  description = "the cpus asked for, in MHz of the slowest eligible node's cores (enforced as a hard quota)"
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
  description = "isolated: the node's agenthost bridge (meta agenthost.docker-network); none: no network"
}

variable "hostname" {
  type    = string
  default = ""
}

variable "volumes" {
  type    = list(object({ name = string, source = string, path = string, read_only = bool }))
  default = []
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

    dynamic "volume" {
      for_each = var.volumes
      labels   = [volume.value.name]
      content {
        type            = "host"
        source          = volume.value.source
        read_only       = volume.value.read_only
        access_mode     = "single-node-writer"
        attachment_mode = "file-system"
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
            path     = var.check_type == "http" ? var.check_path : null
            interval = "10s"
            timeout  = "2s"
          }
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
        entrypoint      = var.entrypoint
        ports           = [for p in var.ports : "p${p}"]
        readonly_rootfs = var.readonly_rootfs
        cap_drop        = ["all"]
        cap_add         = var.cap_add
        security_opt    = ["no-new-privileges"]
        pids_limit      = var.pids_limit
        cpu_hard_limit  = true
        work_dir        = var.workdir
        network_mode    = var.network_mode == "isolated" ? "$${meta.agenthost.docker-network}" : var.network_mode
        hostname        = var.hostname
        mount = [for t in var.tmpfs : {
          type     = "tmpfs"
          target   = t.path
          readonly = false
          tmpfs_options = {
            size = t.size_bytes
          }
        }]
      }

      dynamic "volume_mount" {
        for_each = var.volumes
        content {
          volume      = volume_mount.value.name
          destination = volume_mount.value.path
          read_only   = volume_mount.value.read_only
        }
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
        memory = var.memory_mb
        cpu    = var.cpu_mhz
      }
    }
  }
}
