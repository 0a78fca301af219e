# A build step on the cluster: a short-lived batch job that holds the node's Docker socket. The
# backend streams the build context into it over alloc exec and runs the build there (the engine
# builds it exactly as `docker build` would on that node), then pushes the image when its tag
# names a registry, so every client node can pull it. Submitted to /v1/jobs/parse with typed
# variables, like workload.nomad.hcl; the job id and meta are set on the parsed JSON.
#
# This is platform code, not tenant code: it runs with runc (gVisor cannot reach a host socket),
# so client nodes must allow runc in the docker plugin (nomad/client.hcl does).

variable "image" {
  type        = string
  description = "an image with python3 (AGENTHOST_IMAGE_PYTHON)"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "node_pool" {
  type    = string
  default = "default"
}

variable "lifetime_s" {
  type        = number
  description = "how long the builder waits for its work before it exits on its own"
}

variable "docker_socket" {
  type    = string
  default = "/var/run/docker.sock"
}

job "build" {
  type        = "batch"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  constraint {
    attribute = "$${meta.agenthost.runtimes}"
    operator  = "set_contains"
    value     = "runc"
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
      # The socket is root's: the builder is root in its container, with no capabilities.
      user = "root"

      config {
        image           = var.image
        runtime         = "runc"
        args            = ["sleep", "${var.lifetime_s}"]
        readonly_rootfs = true
        cap_drop        = ["all"]
        security_opt    = ["no-new-privileges"]
        volumes         = ["${var.docker_socket}:/var/run/docker.sock"]
        mount = [{
          type   = "tmpfs"
          target = "/tmp"
          tmpfs_options = {
            size = 67108864
          }
        }]
      }

      resources {
        memory = 256
        cpu    = 200
      }
    }
  }
}
