# IAM least privilege: no wildcard action anywhere in the roles' policies, every
# statement names its resources (the few actions AWS cannot scope are listed and must be
# conditioned), the runner task role can only decrypt its work secret, the dispatcher
# passes exactly the two task roles and runs only the runner family.

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

run "least_privilege" {
  command = apply

  # Distinct ARNs for the resources the assertions tell apart.
  override_resource {
    target = module.runner.aws_iam_role.task
    values = { arn = "arn:aws:iam::111122223333:role/cma-runner-task" }
  }
  override_resource {
    target = module.runner.aws_iam_role.execution
    values = { arn = "arn:aws:iam::111122223333:role/cma-runner-execution" }
  }
  override_resource {
    target = module.secrets.aws_kms_key.work_secret
    values = { arn = "arn:aws:kms:eu-west-1:111122223333:key/work-secret", key_id = "work-secret" }
  }
  override_resource {
    target = module.secrets.aws_kms_key.data
    values = { arn = "arn:aws:kms:eu-west-1:111122223333:key/data", key_id = "data" }
  }
  override_resource {
    target = module.secrets.aws_secretsmanager_secret.webhook_signing_key
    values = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:cma/webhook-signing-key-AbCdEf" }
  }
  override_resource {
    target = module.secrets.aws_secretsmanager_secret.environment_key
    values = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:cma/environment-key-AbCdEf" }
  }

  assert {
    condition     = toset(keys(output.iam_policy_documents)) == toset(["webhook", "sweep", "scheduler", "dispatcher", "runner_task", "runner_execution"])
    error_message = "Unexpected set of roles: ${jsonencode(keys(output.iam_policy_documents))}"
  }

  # No wildcard in any action, and only Allow statements with Action/Resource (no
  # NotAction / NotResource).
  assert {
    condition = alltrue(flatten([
      for role, doc in output.iam_policy_documents : [
        for s in jsondecode(doc).Statement : [
          s.Effect == "Allow",
          !contains(keys(s), "NotAction"),
          !contains(keys(s), "NotResource"),
          [for a in flatten([s.Action]) : !strcontains(a, "*")],
        ]
      ]
    ]))
    error_message = "A role policy has a wildcard action, a Deny, NotAction or NotResource: ${jsonencode(output.iam_policy_documents)}"
  }

  # Every statement names its resources. "*" only for actions without resource-level
  # permissions, and ecs:ListTasks only under an ecs:cluster condition.
  assert {
    condition = alltrue(flatten([
      for role, doc in output.iam_policy_documents : [
        for s in jsondecode(doc).Statement : (
          contains(flatten([s.Resource]), "*") ? (
            length(flatten([s.Resource])) == 1 && (
              alltrue([for a in flatten([s.Action]) : contains(["ecr:GetAuthorizationToken", "xray:PutTraceSegments", "xray:PutTelemetryRecords"], a)]) ||
              (flatten([s.Action]) == ["ecs:ListTasks"] && can(s.Condition.ArnEquals["ecs:cluster"]))
            )
          ) : alltrue([for r in flatten([s.Resource]) : startswith(r, "arn:aws:")])
        )
      ]
    ]))
    error_message = "A statement does not name its resources: ${jsonencode(output.iam_policy_documents)}"
  }

  # The runner task role: exactly kms:Decrypt on the work-secret key, under the
  # encryption context of one work item of this environment.
  assert {
    condition = (
      length(jsondecode(output.iam_policy_documents.runner_task).Statement) == 1 &&
      jsondecode(output.iam_policy_documents.runner_task).Statement[0].Action == ["kms:Decrypt"] &&
      jsondecode(output.iam_policy_documents.runner_task).Statement[0].Resource == ["arn:aws:kms:eu-west-1:111122223333:key/work-secret"] &&
      toset(jsondecode(output.iam_policy_documents.runner_task).Statement[0].Condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == toset(["environment_id", "work_id", "session_id"]) &&
      jsondecode(output.iam_policy_documents.runner_task).Statement[0].Condition.Null == {
        "kms:EncryptionContextKeys"        = "false"
        "kms:EncryptionContext:work_id"    = "false"
        "kms:EncryptionContext:session_id" = "false"
      } &&
      jsondecode(output.iam_policy_documents.runner_task).Statement[0].Condition.StringEquals["kms:EncryptionContext:environment_id"] == "env_01TestEnvironment"
    )
    error_message = "The runner task role must allow only kms:Decrypt on the work-secret key with the encryption-context conditions: ${output.iam_policy_documents.runner_task}"
  }

  # ... and it has no other policy: the task role is not the execution role.
  assert {
    condition     = output.runner_task_role_arn != output.runner_execution_role_arn && module.runner.task_definition.task_role_arn == output.runner_task_role_arn && module.runner.task_definition.execution_role_arn == output.runner_execution_role_arn
    error_message = "The task role and the execution role must be two different roles, wired as such."
  }

  # The execution role: ECR pull on the repository, logs on the runner group, nothing else.
  assert {
    condition = toset(flatten([for s in jsondecode(output.iam_policy_documents.runner_execution).Statement : s.Action])) == toset([
      "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
      "logs:CreateLogStream", "logs:PutLogEvents",
    ])
    error_message = "Unexpected execution-role actions: ${output.iam_policy_documents.runner_execution}"
  }

  # Dispatcher: PassRole on exactly the two task roles, for ECS tasks only.
  assert {
    condition = alltrue([
      for s in jsondecode(output.iam_policy_documents.dispatcher).Statement :
      toset(s.Resource) == toset(["arn:aws:iam::111122223333:role/cma-runner-task", "arn:aws:iam::111122223333:role/cma-runner-execution"]) &&
      try(s.Condition.StringEquals["iam:PassedToService"], null) == "ecs-tasks.amazonaws.com"
      if contains(s.Action, "iam:PassRole")
    ]) && length([for s in jsondecode(output.iam_policy_documents.dispatcher).Statement : s if contains(s.Action, "iam:PassRole")]) == 1
    error_message = "iam:PassRole must name exactly the runner task and execution roles."
  }

  # Dispatcher: RunTask on the runner family only, in the runner cluster only.
  assert {
    condition = alltrue([
      for s in jsondecode(output.iam_policy_documents.dispatcher).Statement :
      toset(s.Resource) == toset(["arn:aws:ecs:eu-west-1:111122223333:task-definition/cma-runner", "arn:aws:ecs:eu-west-1:111122223333:task-definition/cma-runner:*"]) &&
      try(s.Condition.ArnEquals["ecs:cluster"], null) == "arn:aws:ecs:eu-west-1:111122223333:cluster/cma"
      if contains(s.Action, "ecs:RunTask")
    ]) && anytrue([for s in jsondecode(output.iam_policy_documents.dispatcher).Statement : contains(s.Action, "ecs:RunTask")])
    error_message = "ecs:RunTask must be limited to the runner task-definition family and cluster."
  }

  # Dispatcher: the actions the code needs, and no KMS permission on the work-secret key.
  assert {
    condition = toset(flatten([for s in jsondecode(output.iam_policy_documents.dispatcher).Statement : s.Action])) == toset([
      "logs:CreateLogStream", "logs:PutLogEvents",
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
      "kms:Decrypt", "ecs:RunTask", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:TagResource", "iam:PassRole",
    ]) && !strcontains(output.iam_policy_documents.dispatcher, "key/work-secret")
    error_message = "Unexpected dispatcher permissions: ${output.iam_policy_documents.dispatcher}"
  }

  # Webhook: both secrets, kms:Encrypt (never Decrypt) on the work-secret key.
  assert {
    condition = (
      strcontains(output.iam_policy_documents.webhook, "secret:cma/webhook-signing-key") &&
      strcontains(output.iam_policy_documents.webhook, "secret:cma/environment-key") &&
      alltrue([
        for s in jsondecode(output.iam_policy_documents.webhook).Statement :
        s.Action == ["kms:Encrypt"] &&
        toset(s.Condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == toset(["environment_id", "work_id", "session_id"]) &&
        length(s.Condition.Null) == 3 &&
        s.Condition.StringEquals["kms:EncryptionContext:environment_id"] == "env_01TestEnvironment"
        if contains(s.Resource, "arn:aws:kms:eu-west-1:111122223333:key/work-secret")
      ])
    )
    error_message = "The webhook must read both secrets and only encrypt with the work-secret key, under the exact encryption context."
  }

  # Sweep: never the signing secret.
  assert {
    condition     = !strcontains(output.iam_policy_documents.sweep, "webhook-signing-key") && strcontains(output.iam_policy_documents.sweep, "secret:cma/environment-key")
    error_message = "The sweep must read the environment key and never the signing secret."
  }

  # Capacity check (default cap 10): ecs:ListTasks scoped to the cluster.
  assert {
    condition = anytrue([
      for s in jsondecode(output.iam_policy_documents.webhook).Statement :
      s.Action == ["ecs:ListTasks"] && try(s.Condition.ArnEquals["ecs:cluster"], null) == "arn:aws:ecs:eu-west-1:111122223333:cluster/cma"
    ])
    error_message = "The webhook's capacity check needs ecs:ListTasks on the runner cluster."
  }

  # Scheduler: invoke the sweep only.
  assert {
    condition     = flatten([for s in jsondecode(output.iam_policy_documents.scheduler).Statement : s.Action]) == ["lambda:InvokeFunction"]
    error_message = "The scheduler role may only invoke the sweep."
  }

  # Key policies: the only wildcard action is the account-root statement; the
  # work-secret key denies kms:Decrypt to every principal but the runner task role.
  assert {
    condition = alltrue(flatten([
      for k, doc in output.kms_key_policies : [
        for s in jsondecode(doc).Statement :
        !strcontains(jsonencode(s.Action), "*") || (s.Effect == "Allow" && s.Principal == { AWS = "arn:aws:iam::111122223333:root" })
      ]
    ]))
    error_message = "A key policy grants a wildcard action to something other than the account root."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(output.kms_key_policies.work_secret).Statement :
      s.Effect == "Deny" && s.Action == "kms:Decrypt" && try(s.Condition.StringNotEquals["aws:PrincipalArn"], null) == ["arn:aws:iam::111122223333:role/cma-runner-task"]
    ])
    error_message = "The work-secret key policy must deny kms:Decrypt to everyone but the runner task role."
  }
}

run "no_capacity_cap_no_ecs_permission" {
  command = apply

  variables {
    max_concurrent_sessions = null
  }

  assert {
    condition     = !strcontains(output.iam_policy_documents.webhook, "ecs:") && !strcontains(output.iam_policy_documents.sweep, "ecs:")
    error_message = "Without a cap the webhook and sweep need no ECS permission."
  }
}

run "active_tracing_adds_only_xray" {
  command = apply

  variables {
    lambda_tracing_mode = "Active"
  }

  assert {
    condition = alltrue([
      for r in ["webhook", "sweep", "dispatcher"] :
      anytrue([for s in jsondecode(output.iam_policy_documents[r]).Statement : s.Action == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]])
    ])
    error_message = "Active tracing must add the X-Ray statement to the three function roles."
  }
}
