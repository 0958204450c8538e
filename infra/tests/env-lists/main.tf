# Test helper: the environment variables each function reads, straight from the lists
# the Rust code keeps equal to its ENV_VARS constants (a unit test in each crate).

locals {
  functions = "${path.module}/../../../functions"
  read      = { for f in ["webhook", "dispatcher", "runner"] : f => compact([for l in split("\n", file("${local.functions}/${f}/env-vars.txt")) : trimspace(l)]) }
}

output "webhook" {
  description = "Variables the webhook and sweep functions read."
  value       = local.read.webhook
}

output "dispatcher" {
  description = "Variables the dispatcher reads."
  value       = local.read.dispatcher
}

output "runner" {
  description = "Variables the runner reads."
  value       = local.read.runner
}
