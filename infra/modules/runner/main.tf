# The runner: image repository, cluster, task definition, and the two task roles kept
# apart: the execution role (ECS agent: image pull, logs) and the task role (the
# runner process: kms:Decrypt of its own work secret, nothing else).

locals {
  container_name = "runner"
  family         = "${var.name}-runner"
  log_group_name = "/ecs/${var.name}-runner"

  repository_url = var.create_ecr_repository ? aws_ecr_repository.this[0].repository_url : null
  image          = coalesce(var.image_uri, "${coalesce(local.repository_url, "unset")}:${var.image_tag}")

  # The repository ARN the execution role may pull from: the created one, or one in this
  # account parsed from image_uri.
  parsed_ecr = var.image_uri == null ? null : regex(
    "^(?:(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/(?P<repository>[^:@]+))?",
    var.image_uri,
  )
  pull_repository_arn = (
    var.image_uri == null && var.create_ecr_repository ? aws_ecr_repository.this[0].arn :
    try(local.parsed_ecr.account != null, false) ? "arn:${var.partition}:ecr:${local.parsed_ecr.region}:${local.parsed_ecr.account}:repository/${local.parsed_ecr.repository}" :
    null
  )

  scratch_volumes = var.readonly_root_filesystem ? {
    workspace = "/workspace"
    memory    = "/mnt/memory"
    tmp       = "/tmp"
    home      = "/home/runner"
  } : {}

  container_definition = {
    name      = local.container_name
    image     = local.image
    essential = true
    # The image's user; ECS would run it anyway, this makes it explicit and checked.
    user    = "10001:10001"
    command = ["--workdir", "/workspace", "--max-idle", var.max_idle]
    # SIGTERM → orderly teardown: memory-store flush (≤ ~40 s) and force-stop.
    stopTimeout            = var.stop_timeout
    readonlyRootFilesystem = var.readonly_root_filesystem
    privileged             = false
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    environment = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
    mountPoints = [for v, path in local.scratch_volumes : { sourceVolume = v, containerPath = path, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "runner"
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
  }

  ecs_tasks_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        ArnLike      = { "aws:SourceArn" = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:*" }
        StringEquals = { "aws:SourceAccount" = var.account_id }
      }
    }]
  })

  task_policy = {
    Version = "2012-10-17"
    Statement = [{
      # The work secret of the task's own session, nothing else: the ciphertext only
      # decrypts under {environment_id, work_id, session_id}.
      Sid      = "DecryptWorkSecret"
      Effect   = "Allow"
      Action   = ["kms:Decrypt"]
      Resource = [var.work_secret_kms_key_arn]
      Condition = {
        "ForAllValues:StringEquals" = { "kms:EncryptionContextKeys" = ["environment_id", "work_id", "session_id"] }
        Null = {
          "kms:EncryptionContextKeys"        = "false"
          "kms:EncryptionContext:work_id"    = "false"
          "kms:EncryptionContext:session_id" = "false"
        }
        StringEquals = { "kms:EncryptionContext:environment_id" = var.anthropic_environment_id }
      }
    }]
  }

  execution_policy = {
    Version = "2012-10-17"
    Statement = concat(
      local.pull_repository_arn == null ? [] : [
        {
          # No resource-level permission exists for GetAuthorizationToken.
          Sid      = "EcrLogin"
          Effect   = "Allow"
          Action   = ["ecr:GetAuthorizationToken"]
          Resource = ["*"]
        },
        {
          Sid      = "PullRunnerImage"
          Effect   = "Allow"
          Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
          Resource = [local.pull_repository_arn]
        },
      ],
      [
        {
          Sid      = "WriteRunnerLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${aws_cloudwatch_log_group.this.arn}:*"]
        },
      ],
    )
  }
}

################################################################################
# Image repository
################################################################################

resource "aws_ecr_repository" "this" {
  count = var.create_ecr_repository ? 1 : 0

  name                 = "${var.name}-runner"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  count = var.create_ecr_repository ? 1 : 0

  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images (failed or superseded pushes) after 1 day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the ${var.ecr_image_retention_count} most recent images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_image_retention_count
        }
        action = { type = "expire" }
      },
    ]
  })
}

################################################################################
# Cluster
################################################################################

resource "aws_ecs_cluster" "this" {
  #checkov:skip=CKV_AWS_65:Container Insights is var.container_insights, "enabled" by default (asserted in tests/runner.tftest.hcl); checkov cannot resolve the value through the example's two module levels.
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_in_days, default 30 days): session transcripts of tool calls can be large.
  name              = local.log_group_name
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

################################################################################
# Roles
################################################################################

resource "aws_iam_role" "execution" {
  name               = "${var.name}-runner-execution"
  description        = "ECS task execution role of the runner: pull the image, write the log stream"
  assume_role_policy = local.ecs_tasks_trust
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = jsonencode(local.execution_policy)
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-runner-task"
  description        = "Runner process: kms:Decrypt of its own work secret, nothing else"
  assume_role_policy = local.ecs_tasks_trust
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  name   = "decrypt-work-secret"
  role   = aws_iam_role.task.id
  policy = jsonencode(local.task_policy)
}

################################################################################
# Task definition
################################################################################

resource "aws_ecs_task_definition" "this" {
  #checkov:skip=CKV_AWS_336:Off by default (readonly_root_filesystem): the agent's bash tool writes outside /workspace ($HOME, /tmp, caches), and Fargate bind mounts are root-owned unless the image declares them as VOLUMEs. Each task serves one session and is discarded.
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container_definition])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.architecture
  }

  dynamic "ephemeral_storage" {
    for_each = var.ephemeral_storage_gib > 20 ? [var.ephemeral_storage_gib] : []
    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  dynamic "volume" {
    for_each = local.scratch_volumes
    content {
      name = volume.key
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.image_uri != null || var.create_ecr_repository
      error_message = "Set runner_image_uri when create_ecr_repository is false."
    }
  }
}
