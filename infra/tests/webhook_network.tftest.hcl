# The webhook endpoint (HTTP API or Function URL), the sweep schedule, and the runner
# network: HTTPS-only egress, optional VPC endpoints, bring-your-own security groups.

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

run "defaults" {
  command = apply

  assert {
    condition     = output.webhook_url == "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/"
    error_message = "Default endpoint is the HTTP API (POST /): ${output.webhook_url}"
  }

  assert {
    condition     = module.webhook.schedule_expression == "rate(1 minute)"
    error_message = "The sweep runs every minute by default."
  }

  # The tasks' security group: TCP 443 only, nothing else.
  assert {
    condition = length(module.network.egress_rules) == 1 && alltrue([
      for r in module.network.egress_rules : r.ip_protocol == "tcp" && r.from_port == 443 && r.to_port == 443
    ])
    error_message = "Runner egress must be HTTPS only: ${jsonencode(module.network.egress_rules)}"
  }

  assert {
    condition     = length(module.network.vpc_endpoint_ids) == 0
    error_message = "No VPC endpoint by default."
  }
}

run "function_url_and_custom_schedule" {
  command = apply

  variables {
    webhook_endpoint_type     = "function_url"
    webhook_timeout           = 60
    sweep_schedule_expression = "rate(5 minutes)"
  }

  assert {
    condition     = output.webhook_url == "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"
    error_message = "With function_url the webhook URL is the Function URL."
  }

  assert {
    condition     = module.webhook.schedule_expression == "rate(5 minutes)"
    error_message = "The schedule must follow sweep_schedule_expression."
  }
}

run "http_api_timeout_limit" {
  command = plan

  variables {
    webhook_endpoint_type = "http_api"
    webhook_timeout       = 60
  }

  expect_failures = [var.webhook_timeout]
}

run "no_schedule" {
  command = apply

  variables {
    create_sweep_schedule = false
  }

  assert {
    condition     = module.webhook.schedule_name == null && !contains(keys(output.iam_policy_documents), "scheduler")
    error_message = "create_sweep_schedule = false must create neither schedule nor scheduler role."
  }
}

run "vpc_endpoints_and_ipv6" {
  command = apply

  variables {
    create_vpc_endpoints    = true
    private_route_table_ids = ["rtb-0123456789abcdef0"]
    egress_ipv6_cidr_blocks = ["::/0"]
  }

  assert {
    condition     = toset(keys(module.network.vpc_endpoint_ids)) == toset(["ecr.api", "ecr.dkr", "logs", "kms", "s3"])
    error_message = "Expected the ecr.api, ecr.dkr, logs, kms and s3 endpoints."
  }

  assert {
    condition = length(module.network.egress_rules) == 2 && alltrue([
      for r in module.network.egress_rules : r.ip_protocol == "tcp" && r.from_port == 443 && r.to_port == 443
    ])
    error_message = "IPv6 egress must be HTTPS only too."
  }
}

run "bring_your_own_security_group" {
  command = apply

  variables {
    create_security_group = false
    security_group_ids    = ["sg-0fedcba9876543210"]
  }

  assert {
    condition     = output.runner_security_group_ids == tolist(["sg-0fedcba9876543210"]) && output.lambda_environments.dispatcher.SECURITY_GROUPS == "sg-0fedcba9876543210"
    error_message = "The dispatcher must use the given security group only."
  }
}

run "invalid_inputs_are_rejected" {
  command = plan

  variables {
    name                     = "CMA_Prod"
    anthropic_environment_id = "environment-1"
    subnet_ids               = []
    lambda_architecture      = "aarch64"
  }

  expect_failures = [var.name, var.anthropic_environment_id, var.subnet_ids, var.lambda_architecture]
}
