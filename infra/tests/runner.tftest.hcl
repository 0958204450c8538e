# The runner task definition: Fargate, awsvpc, init process, stopTimeout above the
# runner's ~40 s teardown, non-root user, logs to CloudWatch, writable /workspace; the
# image repository settings; variables reaching the task definition.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  anthropic_environment_id = "env_01TestEnvironment"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0aaaaaaaaaaaaaaaa"]
  webhook_zip_path         = "tests/fixtures/bootstrap.zip"
  sweep_zip_path           = "tests/fixtures/bootstrap.zip"
  dispatcher_zip_path      = "tests/fixtures/bootstrap.zip"
}

run "defaults" {
  command = apply

  assert {
    condition = (
      module.runner.task_definition.network_mode == "awsvpc" &&
      module.runner.task_definition.requires_compatibilities == toset(["FARGATE"]) &&
      module.runner.task_definition.cpu == "1024" &&
      module.runner.task_definition.memory == "2048" &&
      module.runner.task_definition.cpu_architecture == "X86_64" &&
      module.runner.task_definition.ephemeral_storage_gib == null
    )
    error_message = "Unexpected task-level settings: ${jsonencode(module.runner.task_definition)}"
  }

  assert {
    condition     = module.runner.container_insights == "enabled"
    error_message = "Container Insights must be on by default."
  }

  assert {
    condition     = length(module.runner.container_definitions) == 1
    error_message = "One container expected."
  }

  assert {
    condition = (
      module.runner.container_definitions[0].name == "runner" &&
      module.runner.container_definitions[0].essential &&
      module.runner.container_definitions[0].user == "10001:10001" &&
      module.runner.container_definitions[0].stopTimeout == 120 &&
      module.runner.container_definitions[0].linuxParameters.initProcessEnabled &&
      module.runner.container_definitions[0].linuxParameters.capabilities.drop == ["ALL"] &&
      !module.runner.container_definitions[0].privileged &&
      !module.runner.container_definitions[0].readonlyRootFilesystem
    )
    error_message = "Unexpected container settings: ${jsonencode(module.runner.container_definitions[0])}"
  }

  assert {
    condition     = module.runner.container_definitions[0].command == ["--workdir", "/workspace", "--max-idle", "60s"]
    error_message = "The runner must work in /workspace and exit after 60 s idle."
  }

  assert {
    condition = (
      module.runner.container_definitions[0].logConfiguration.logDriver == "awslogs" &&
      module.runner.container_definitions[0].logConfiguration.options["awslogs-group"] == "/ecs/cma-runner" &&
      module.runner.container_definitions[0].logConfiguration.options["awslogs-region"] == "eu-west-1"
    )
    error_message = "The runner must log to its CloudWatch log group."
  }

  assert {
    condition     = module.runner.image == "111122223333.dkr.ecr.eu-west-1.amazonaws.com/cma-runner:v1"
    error_message = "The default image is the created repository with runner_image_tag."
  }

  assert {
    condition     = output.docker_push_command == "aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin 111122223333.dkr.ecr.eu-west-1.amazonaws.com && docker tag cma-runner 111122223333.dkr.ecr.eu-west-1.amazonaws.com/cma-runner:v1 && docker push 111122223333.dkr.ecr.eu-west-1.amazonaws.com/cma-runner:v1"
    error_message = "Unexpected docker push line: ${output.docker_push_command}"
  }
}

run "sizes_architecture_and_read_only_root" {
  command = apply

  variables {
    runner_cpu                      = 2048
    runner_memory                   = 8192
    runner_ephemeral_storage_gib    = 50
    runner_architecture             = "ARM64"
    runner_stop_timeout             = 90
    runner_max_idle                 = "2m"
    runner_image_tag                = "2026-12-01.1"
    runner_readonly_root_filesystem = true
  }

  assert {
    condition = (
      module.runner.task_definition.cpu == "2048" &&
      module.runner.task_definition.memory == "8192" &&
      module.runner.task_definition.cpu_architecture == "ARM64" &&
      module.runner.task_definition.ephemeral_storage_gib == 50
    )
    error_message = "Sizes and architecture must follow the variables: ${jsonencode(module.runner.task_definition)}"
  }

  assert {
    condition = (
      module.runner.container_definitions[0].stopTimeout == 90 &&
      module.runner.container_definitions[0].command[3] == "2m" &&
      endswith(module.runner.image, ":2026-12-01.1") &&
      module.runner.container_definitions[0].readonlyRootFilesystem
    )
    error_message = "Container settings must follow the variables."
  }

  # With a read-only root, /workspace and /mnt/memory (and /tmp, $HOME) are volumes.
  assert {
    condition = (
      toset([for m in module.runner.container_definitions[0].mountPoints : m.containerPath]) == toset(["/workspace", "/mnt/memory", "/tmp", "/home/runner"]) &&
      alltrue([for m in module.runner.container_definitions[0].mountPoints : !m.readOnly]) &&
      toset(module.runner.task_definition.volumes) == toset([for m in module.runner.container_definitions[0].mountPoints : m.sourceVolume])
    )
    error_message = "Writable volumes expected on /workspace, /mnt/memory, /tmp and /home/runner."
  }
}

run "external_image_in_another_repository" {
  command = apply

  variables {
    create_ecr_repository = false
    runner_image_uri      = "444455556666.dkr.ecr.eu-west-1.amazonaws.com/shared/cma-runner@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }

  assert {
    condition = anytrue([
      for s in jsondecode(output.iam_policy_documents.runner_execution).Statement :
      s.Sid == "PullRunnerImage" && s.Resource == ["arn:aws:ecr:eu-west-1:444455556666:repository/shared/cma-runner"]
    ])
    error_message = "The execution role must pull from the repository of runner_image_uri."
  }

  assert {
    condition     = output.ecr_repository_url == null && output.docker_push_command == null
    error_message = "No repository, no push line."
  }
}

run "public_image_needs_no_ecr_permission" {
  command = apply

  variables {
    create_ecr_repository = false
    runner_image_uri      = "public.ecr.aws/example/cma-runner:1.0.0"
  }

  assert {
    condition     = !strcontains(output.iam_policy_documents.runner_execution, "ecr:")
    error_message = "A public image needs no ECR permission."
  }
}

run "no_image_at_all_is_rejected" {
  command = plan

  variables {
    create_ecr_repository = false
  }

  expect_failures = [var.runner_image_uri]
}

run "invalid_fargate_size_is_rejected" {
  command = plan

  variables {
    runner_cpu    = 256
    runner_memory = 4096
  }

  expect_failures = [var.runner_memory]
}

run "stop_timeout_too_short_for_the_teardown_is_rejected" {
  command = plan

  variables {
    runner_stop_timeout = 30
  }

  expect_failures = [var.runner_stop_timeout]
}
