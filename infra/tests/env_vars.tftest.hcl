# Environment variable names: every variable Terraform sets on the webhook, sweep and
# dispatcher functions and on the runner container is one the code reads, taken from
# functions/<fn>/env-vars.txt (kept equal to each crate's ENV_VARS by a unit test).
# The literal-secret variants are never set in AWS.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  anthropic_environment_id = "env_01TestEnvironment"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  webhook_zip_path         = "tests/fixtures/bootstrap.zip"
  sweep_zip_path           = "tests/fixtures/bootstrap.zip"
  dispatcher_zip_path      = "tests/fixtures/bootstrap.zip"
}

run "names_read_by_the_code" {
  command = plan

  module {
    source = "./tests/env-lists"
  }

  assert {
    condition     = contains(output.webhook, "QUEUE_URL") && contains(output.dispatcher, "RUNNER_TASK_DEFINITION") && contains(output.runner, "ANTHROPIC_WORK_SECRET_CIPHERTEXT")
    error_message = "Could not read the env-vars.txt lists."
  }
}

run "defaults" {
  command = apply

  # Webhook: only names the code reads, everything it needs, no literal secret.
  assert {
    condition     = alltrue([for k in keys(output.lambda_environments.webhook) : contains(run.names_read_by_the_code.webhook, k)])
    error_message = "The webhook sets a variable its code does not read: ${jsonencode(keys(output.lambda_environments.webhook))} vs functions/webhook/env-vars.txt"
  }
  assert {
    condition = alltrue([for k in [
      "ANTHROPIC_ENVIRONMENT_ID", "WEBHOOK_SIGNING_KEY_SECRET_ARN", "ENVIRONMENT_KEY_SECRET_ARN", "QUEUE_URL",
      "WORK_SECRET_KMS_KEY_ID", "MAX_CONCURRENT_SESSIONS", "ECS_CLUSTER", "RUNNER_TASK_FAMILY",
    ] : contains(keys(output.lambda_environments.webhook), k)])
    error_message = "The webhook lacks a variable it needs: ${jsonencode(keys(output.lambda_environments.webhook))}"
  }

  # Sweep: the same list, minus the signing secret.
  assert {
    condition     = alltrue([for k in keys(output.lambda_environments.sweep) : contains(run.names_read_by_the_code.webhook, k)])
    error_message = "The sweep sets a variable its code does not read."
  }
  assert {
    condition     = !contains(keys(output.lambda_environments.sweep), "WEBHOOK_SIGNING_KEY_SECRET_ARN") && contains(keys(output.lambda_environments.sweep), "ENVIRONMENT_KEY_SECRET_ARN")
    error_message = "The sweep must get the environment-key secret and never the signing secret."
  }

  # Dispatcher.
  assert {
    condition     = alltrue([for k in keys(output.lambda_environments.dispatcher) : contains(run.names_read_by_the_code.dispatcher, k)])
    error_message = "The dispatcher sets a variable its code does not read: ${jsonencode(keys(output.lambda_environments.dispatcher))} vs functions/dispatcher/env-vars.txt"
  }
  assert {
    condition = alltrue([for k in ["ECS_CLUSTER", "RUNNER_TASK_DEFINITION", "SUBNETS", "SECURITY_GROUPS", "QUEUE_URL"] :
    contains(keys(output.lambda_environments.dispatcher), k)])
    error_message = "The dispatcher lacks a required variable."
  }
  assert {
    condition = (
      output.lambda_environments.dispatcher.SUBNETS == "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb" &&
      output.lambda_environments.dispatcher.SECURITY_GROUPS == "sg-0123456789abcdef0" &&
      output.lambda_environments.dispatcher.ASSIGN_PUBLIC_IP == "false" &&
      output.lambda_environments.dispatcher.RUNNER_TASK_DEFINITION == output.runner_task_definition_family &&
      output.lambda_environments.dispatcher.RUNNER_CONTAINER_NAME == module.runner.container_definitions[0].name &&
      output.lambda_environments.dispatcher.ECS_CLUSTER == output.ecs_cluster_name
    )
    error_message = "The dispatcher's ECS settings do not match the stack: ${jsonencode(output.lambda_environments.dispatcher)}"
  }

  # Runner container: only names the runner reads; no credential at all in the task
  # definition (the dispatcher passes the ciphertext per task).
  assert {
    condition     = alltrue([for e in module.runner.container_definitions[0].environment : contains(run.names_read_by_the_code.runner, e.name)])
    error_message = "The task definition sets a variable the runner does not read: ${jsonencode(module.runner.container_definitions[0].environment)}"
  }

  # Never in AWS: literal secrets, plaintext work secrets, the environment key in the sandbox.
  assert {
    condition = alltrue(flatten([
      for fn, env in output.lambda_environments : [
        for k in ["ANTHROPIC_WEBHOOK_SIGNING_KEY", "ANTHROPIC_ENVIRONMENT_KEY", "ALLOW_PLAINTEXT_WORK_SECRET"] : !contains(keys(env), k)
      ]
    ]))
    error_message = "A function is configured with a literal secret or plaintext work secrets."
  }
  assert {
    condition = alltrue([
      for k in ["ANTHROPIC_ENVIRONMENT_KEY", "ANTHROPIC_WORK_SECRET", "ANTHROPIC_WORK_SECRET_CIPHERTEXT", "ALLOW_ENVIRONMENT_KEY_IN_SANDBOX", "ANTHROPIC_WORK_ID", "ANTHROPIC_SESSION_ID"] :
      !contains(keys(output.runner_container_environment), k)
    ])
    error_message = "The task definition must carry no credential and no per-item value."
  }
}

# Every optional setting on: still only names the code reads.
run "every_option_set" {
  command = apply

  variables {
    anthropic_base_url                  = "https://api.anthropic.com"
    reclaim_older_than_ms               = 20000
    max_drain_items                     = 50
    stale_claim_after_seconds           = 900
    capacity_provider_strategy          = "FARGATE_SPOT:1,FARGATE:0:1"
    assign_public_ip                    = true
    runner_memory_sync_interval_seconds = 30
    runner_memory_delete_mode           = "log_only"
    runner_log_level                    = "debug"
  }

  assert {
    condition = alltrue(concat(
      [for k in keys(output.lambda_environments.webhook) : contains(run.names_read_by_the_code.webhook, k)],
      [for k in keys(output.lambda_environments.sweep) : contains(run.names_read_by_the_code.webhook, k)],
      [for k in keys(output.lambda_environments.dispatcher) : contains(run.names_read_by_the_code.dispatcher, k)],
      [for k in keys(output.runner_container_environment) : contains(run.names_read_by_the_code.runner, k)],
    ))
    error_message = "An optional setting introduced a name the code does not read."
  }

  assert {
    condition = (
      output.lambda_environments.webhook.ANTHROPIC_BASE_URL == "https://api.anthropic.com" &&
      output.lambda_environments.webhook.RECLAIM_OLDER_THAN_MS == "20000" &&
      output.lambda_environments.sweep.MAX_DRAIN_ITEMS == "50" &&
      output.lambda_environments.dispatcher.STALE_CLAIM_AFTER_SECONDS == "900" &&
      output.lambda_environments.dispatcher.CAPACITY_PROVIDER_STRATEGY == "FARGATE_SPOT:1,FARGATE:0:1" &&
      output.lambda_environments.dispatcher.ASSIGN_PUBLIC_IP == "true" &&
      output.lambda_environments.dispatcher.ANTHROPIC_BASE_URL == "https://api.anthropic.com" &&
      output.runner_container_environment == { RUST_LOG = "debug", MEMORY_SYNC_INTERVAL_SECONDS = "30", MEMORY_DELETE_MODE = "log_only" }
    )
    error_message = "Optional settings did not reach the environment."
  }
}

run "no_capacity_cap" {
  command = apply

  variables {
    max_concurrent_sessions = null
  }

  assert {
    condition = alltrue([
      for k in ["MAX_CONCURRENT_SESSIONS", "ECS_CLUSTER", "RUNNER_TASK_FAMILY"] : !contains(keys(output.lambda_environments.webhook), k)
    ])
    error_message = "Without a cap no capacity variables are set."
  }
}
