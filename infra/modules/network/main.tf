# The runner tasks' security group: no ingress at all, egress only TCP 443. DNS to the
# VPC resolver (VPC+2) is not subject to security groups, so nothing else is needed.
# Optional VPC endpoints keep AWS traffic (image pull, logs, KMS) inside the VPC; the
# Claude API and anything else the agent fetches still needs a NAT gateway or a public
# IP (assign_public_ip in the root module).

locals {
  create_sg = var.create_security_group
  task_security_group_ids = concat(
    local.create_sg ? [aws_security_group.tasks[0].id] : [],
    var.security_group_ids,
  )
  # Static keys: the created group's id is unknown until apply.
  task_security_groups_by_key = merge(
    local.create_sg ? { created = aws_security_group.tasks[0].id } : {},
    { for i, id in var.security_group_ids : "existing-${i}" => id },
  )
  interface_endpoints = var.create_vpc_endpoints ? toset(["ecr.api", "ecr.dkr", "logs", "kms"]) : toset([])
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: the dispatcher passes it to ecs:RunTask (SECURITY_GROUPS), not to a resource Terraform manages.
  count = local.create_sg ? 1 : 0

  name_prefix = "${var.name}-runner-"
  description = "Claude Managed Agents runner tasks: no ingress, egress TCP 443 only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-runner" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "https_ipv4" {
  for_each = local.create_sg ? toset(var.egress_cidr_blocks) : toset([])

  security_group_id = aws_security_group.tasks[0].id
  description       = "HTTPS: Claude API, AWS APIs, git over https"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
  tags              = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https_ipv6" {
  for_each = local.create_sg ? toset(var.egress_ipv6_cidr_blocks) : toset([])

  security_group_id = aws_security_group.tasks[0].id
  description       = "HTTPS over IPv6"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv6         = each.value
  tags              = var.tags
}

resource "aws_security_group" "endpoints" {
  count = var.create_vpc_endpoints ? 1 : 0

  name_prefix = "${var.name}-endpoints-"
  description = "VPC interface endpoints used by the runner tasks: HTTPS from the tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-endpoints" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_tasks" {
  for_each = var.create_vpc_endpoints ? local.task_security_groups_by_key : {}

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the runner tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value
  tags                         = var.tags
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  tags                = merge(var.tags, { Name = "${var.name}-${each.value}" })
}

resource "aws_vpc_endpoint" "s3" {
  count = var.create_vpc_endpoints ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.route_table_ids
  # Only the bucket ECR serves image layers from.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "EcrImageLayers"
      Effect    = "Allow"
      Principal = "*"
      Action    = ["s3:GetObject"]
      Resource  = ["arn:aws:s3:::prod-${var.region}-starport-layer-bucket/*"]
    }]
  })
  tags = merge(var.tags, { Name = "${var.name}-s3" })
}
