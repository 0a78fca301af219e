# The platform's own one-shot job (orchestrator/backends/nomad/oneshot.py): restic for backups and
# restores, run once on the node that holds the volume it mounts, then purged. Submitted to
# /v1/jobs/parse with typed variables; job id and meta are set on the parsed JSON.
#
# Its env (the restic repository's password and the S3 keys) never appears here: it lives in the
# Nomad Variable nomad/jobs/<job id>, which only this job's tasks can read (workload identity), and
# reaches the task through the template below, as a workload's env does.
#
# Platform code, not tenant code: it runs only the platform's fixed argv over the tenant's files.
# runc (root without most capabilities: only what reading and writing files of other owners needs),
# read-only root filesystem, no new privileges; the network is the node's own when it must reach the
# backup repository (docs/security.md, "Backups on Nomad", says why not a tenant bridge).

variable "image" {
  type        = string
  description = "an image with python3, /bin/sh and a libc for the node's restic (AGENTHOST_IMAGE_PYTHON)"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "node_pool" {
  type    = string
  default = "default"
}

variable "node_id" {
  type        = string
  default     = ""
  description = "the node that holds the volume; empty lets the scheduler pick one"
}

variable "args" {
  type        = list(string)
  description = "the platform's fixed command (never agent input)"
}

variable "network_mode" {
  type    = string
  default = "none"
}

variable "cap_add" {
  type    = list(string)
  default = []
}

variable "memory_mb" {
  type    = number
  default = 256
}

variable "binaries" {
  type        = list(object({ host = string, path = string }))
  default     = []
  description = "host files mounted read-only (the node's restic)"
}

variable "volumes" {
  type = list(object({
    source    = string
    path      = string
    read_only = bool
    labels    = map(string)
  }))
  default = []
}

job "oneshot" {
  type        = "batch"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  constraint {
    attribute = "$${meta.agenthost.runtimes}"
    operator  = "set_contains"
    value     = "runc"
  }

  dynamic "constraint" {
    for_each = var.node_id != "" ? [1] : []
    content {
      attribute = "$${node.unique.id}"
      value     = var.node_id
    }
  }

  group "main" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "main" {
      driver = "docker"
      user   = "root"

      config {
        image           = var.image
        runtime         = "runc"
        # The output goes to files in the task's directory, read once the task is dead (logs.read_output):
        # Nomad 1.6's docker logger stops when the container exits and can lose a short task's output.
        command         = "/bin/sh"
        args            = concat(["-c", "exec \"$@\" >/local/ah-stdout 2>/local/ah-stderr", "sh"], var.args)
        network_mode    = var.network_mode
        readonly_rootfs = true
        cap_drop        = ["all"]
        cap_add         = var.cap_add
        security_opt    = ["no-new-privileges"]
        pids_limit      = 64
        volumes         = [for b in var.binaries : "${b.host}:${b.path}:ro"]
        mount = [for v in var.volumes : {
          type     = "volume"
          source   = v.source
          target   = v.path
          readonly = v.read_only
          volume_options = {
            no_copy = false
            labels  = [v.labels]
          }
        }]
      }

      # One JSON-quoted value per line, as in workload.nomad.hcl.
      template {
        destination = "secrets/env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
        {{- with nomadVar (printf "nomad/jobs/%s" (env "NOMAD_JOB_ID")) -}}
        {{- range .Tuples }}
        {{ .K }}={{ .V | toUnescapedJSON }}
        {{- end -}}
        {{- end }}
        EOT
      }

      env {
        # restic's temporary pack files go to the task's own directory, not a tmpfs in memory.
        TMPDIR = "$${NOMAD_TASK_DIR}"
        HOME   = "$${NOMAD_TASK_DIR}"
      }

      resources {
        memory = var.memory_mb
        cpu    = 100
      }
    }
  }
}
