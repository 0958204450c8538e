# Defaults for the mocked AWS provider used by every test: realistic ARNs and ids, so
# the assertions can check that policies name their resources.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "111122223333"
    arn        = "arn:aws:iam::111122223333:user/terraform-test"
    user_id    = "AIDAEXAMPLE"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition          = "aws"
    dns_suffix         = "amazonaws.com"
    reverse_dns_prefix = "com.amazonaws"
  }
}

mock_data "aws_region" {
  defaults = {
    id   = "eu-west-1"
    name = "eu-west-1"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-1:111122223333:key/11111111-2222-3333-4444-555555555555"
    key_id = "11111111-2222-3333-4444-555555555555"
  }
}

mock_resource "aws_secretsmanager_secret" {
  defaults = {
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:cma/mock-AbCdEf"
  }
}

mock_resource "aws_sqs_queue" {
  defaults = {
    arn = "arn:aws:sqs:eu-west-1:111122223333:cma-work"
    id  = "https://sqs.eu-west-1.amazonaws.com/111122223333/cma-work"
    url = "https://sqs.eu-west-1.amazonaws.com/111122223333/cma-work"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn       = "arn:aws:iam::111122223333:role/cma-mock"
    unique_id = "AROAEXAMPLE"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:111122223333:log-group:/cma/mock"
  }
}

mock_resource "aws_lambda_function" {
  defaults = {
    arn           = "arn:aws:lambda:eu-west-1:111122223333:function:cma-mock"
    qualified_arn = "arn:aws:lambda:eu-west-1:111122223333:function:cma-mock:$LATEST"
    invoke_arn    = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:111122223333:function:cma-mock/invocations"
    version       = "$LATEST"
  }
}

mock_resource "aws_lambda_function_url" {
  defaults = {
    function_url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"
  }
}

mock_resource "aws_lambda_event_source_mapping" {
  defaults = {
    uuid = "00000000-0000-0000-0000-000000000001"
  }
}

mock_resource "aws_apigatewayv2_api" {
  defaults = {
    id            = "a1b2c3d4e5"
    api_endpoint  = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    execution_arn = "arn:aws:execute-api:eu-west-1:111122223333:a1b2c3d4e5"
  }
}

mock_resource "aws_apigatewayv2_stage" {
  defaults = {
    invoke_url = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
  }
}

mock_resource "aws_ecs_cluster" {
  defaults = {
    arn = "arn:aws:ecs:eu-west-1:111122223333:cluster/cma"
  }
}

mock_resource "aws_ecs_task_definition" {
  defaults = {
    arn                  = "arn:aws:ecs:eu-west-1:111122223333:task-definition/cma-runner:1"
    arn_without_revision = "arn:aws:ecs:eu-west-1:111122223333:task-definition/cma-runner"
    revision             = 1
  }
}

mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:eu-west-1:111122223333:repository/cma-runner"
    repository_url = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/cma-runner"
    registry_id    = "111122223333"
  }
}

mock_resource "aws_security_group" {
  defaults = {
    id  = "sg-0123456789abcdef0"
    arn = "arn:aws:ec2:eu-west-1:111122223333:security-group/sg-0123456789abcdef0"
  }
}

mock_resource "aws_scheduler_schedule" {
  defaults = {
    arn = "arn:aws:scheduler:eu-west-1:111122223333:schedule/default/cma-sweep"
  }
}
