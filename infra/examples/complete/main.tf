# A complete, runnable root: a small VPC, then the whole stack. Real AWS by default;
# point aws_endpoint_url at an emulator (moto) to try it without an account.

locals {
  emulated = var.aws_endpoint_url != null
  services = [
    "apigatewayv2", "cloudwatch", "ec2", "ecr", "ecs", "iam", "kms", "lambda", "logs",
    "scheduler", "secretsmanager", "sqs", "sts",
  ]
}

provider "aws" {
  region = var.region

  # Only when emulating: never talk to real AWS, accept the emulator's dummy identity.
  skip_credentials_validation = local.emulated
  skip_requesting_account_id  = local.emulated
  skip_metadata_api_check     = local.emulated
  skip_region_validation      = local.emulated
  max_retries                 = local.emulated ? 2 : null

  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoint_url] : []
    content {
      apigatewayv2   = endpoints.value
      cloudwatch     = endpoints.value
      ec2            = endpoints.value
      ecr            = endpoints.value
      ecs            = endpoints.value
      iam            = endpoints.value
      kms            = endpoints.value
      lambda         = endpoints.value
      logs           = endpoints.value
      scheduler      = endpoints.value
      secretsmanager = endpoints.value
      sqs            = endpoints.value
      sts            = endpoints.value
    }
  }
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The example takes the first two zones of the Region (slice below); a zone AWS adds later does not change which two subnets exist until the stack is re-created.
  state = "available"
}

locals {
  azs     = slice(data.aws_availability_zones.available.names, 0, 2)
  private = var.network_mode == "private"
}

################################################################################
# VPC: two public subnets (and, in private mode, two private ones behind a NAT gateway)
################################################################################

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:Example VPC; enable flow logs in a production VPC.
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

# Strip the default security group of its rules; nothing uses it.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone = local.azs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_subnet" "private" {
  count = local.private ? 2 : 0

  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, 8 + count.index)
  availability_zone = local.azs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_eip" "nat" {
  #checkov:skip=CKV2_AWS_19:Attached to the NAT gateway below.
  count = local.private ? 1 : 0

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat" })
}

resource "aws_nat_gateway" "this" {
  count = local.private ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = merge(var.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count = local.private ? 1 : 0

  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route" "private_nat" {
  count = local.private ? 1 : 0

  route_table_id         = aws_route_table.private[0].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

resource "aws_route_table_association" "private" {
  count = local.private ? 2 : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

################################################################################
# The stack
################################################################################

module "cma" {
  source = "../.."

  name                     = var.name
  anthropic_environment_id = var.anthropic_environment_id
  tags                     = var.tags

  webhook_zip_path      = var.webhook_zip_path
  sweep_zip_path        = var.sweep_zip_path
  dispatcher_zip_path   = var.dispatcher_zip_path
  webhook_endpoint_type = var.webhook_endpoint_type
  runner_image_tag      = var.runner_image_tag
  container_insights    = "enabled"

  vpc_id                  = aws_vpc.this.id
  subnet_ids              = local.private ? aws_subnet.private[*].id : aws_subnet.public[*].id
  assign_public_ip        = !local.private
  create_vpc_endpoints    = local.private
  private_route_table_ids = local.private ? aws_route_table.private[*].id : []

  # moto does not store RedriveAllowPolicy (the provider would wait for it forever).
  create_dlq_redrive_allow_policy = !local.emulated

  secret_recovery_window_in_days = var.throwaway ? 0 : 30
  kms_deletion_window_in_days    = var.throwaway ? 7 : 30
  ecr_force_delete               = var.throwaway
}
