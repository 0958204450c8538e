output "task_security_group_ids" {
  description = "Security groups the dispatcher attaches to every runner task."
  value       = local.task_security_group_ids
}

output "created_security_group_id" {
  description = "ID of the security group this module created (null when create_security_group is false)."
  value       = local.create_sg ? aws_security_group.tasks[0].id : null
}

output "egress_rules" {
  description = "The egress rules of the created security group (protocol, ports, destination)."
  value = [
    for r in concat(values(aws_vpc_security_group_egress_rule.https_ipv4), values(aws_vpc_security_group_egress_rule.https_ipv6)) : {
      ip_protocol = r.ip_protocol
      from_port   = r.from_port
      to_port     = r.to_port
      cidr        = coalesce(r.cidr_ipv4, r.cidr_ipv6)
    }
  ]
}

output "vpc_endpoint_ids" {
  description = "IDs of the VPC endpoints, by service (empty unless create_vpc_endpoints)."
  value = merge(
    { for k, v in aws_vpc_endpoint.interface : k => v.id },
    var.create_vpc_endpoints ? { s3 = aws_vpc_endpoint.s3[0].id } : {},
  )
}
