# Work on a node's Docker volumes: a short batch job with the node's Docker socket that runs the
# backend's own script (orchestrator/backends/nomad/volume_jobs.py) and exits. It finds where a
# volume lives on the node, creates it there, or removes it from the node that holds it. Submitted
# to /v1/jobs/parse with typed variables, like workload.nomad.hcl; job id and meta are set on the
# parsed JSON.
#
# Platform code, not tenant code: runc (gVisor cannot reach a host socket), root in its container
# for the socket, with no capabilities and no network.

variable "image" {
  type        = string
  description = "an image with python3 and /bin/sh (AGENTHOST_IMAGE_PYTHON)"
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
  description = "the backend's script and its arguments (never agent input)"
}

variable "docker_socket" {
  type    = string
  default = "/var/run/docker.sock"
}

job "volume" {
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
}
