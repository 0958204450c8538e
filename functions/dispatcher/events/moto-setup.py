#!/usr/bin/env python3
"""Local dispatcher environment in moto, and fresh SQS events for `cargo lambda invoke`.

    moto-setup.py setup [--endpoint URL] [--env-file PATH]
        Creates (idempotently) a queue with a DLQ (redrive maxReceiveCount 5), an ECS
        cluster and an awsvpc Fargate task definition with a `runner` container, looks
        up moto's default subnets and security group, writes an env file for
        `cargo lambda watch --env-file` and prints the same as `export` lines.

    moto-setup.py fresh EVENT.json
        Prints the SQS event with every record's `acked_at` set to now (the fixtures'
        claims are otherwise older than STALE_CLAIM_AFTER_SECONDS).

Needs boto3 (the moto venv has it). Every value is a local dummy.
"""

import argparse
import datetime
import json
import sys


def setup(endpoint, env_file):
    import boto3

    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sqs = boto3.client("sqs", **kw)
    ecs = boto3.client("ecs", **kw)
    ec2 = boto3.client("ec2", **kw)

    dlq = sqs.create_queue(QueueName="cma-dispatch-local-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="cma-dispatch-local",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    ecs.create_cluster(clusterName="cma-local")
    ecs.register_task_definition(
        family="cma-runner-local",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "runner", "image": "runner:latest", "memory": 512}],
    )
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    ][:2]
    sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"
    ][0]["GroupId"]

    env = {
        "ECS_CLUSTER": "cma-local",
        "RUNNER_TASK_DEFINITION": "cma-runner-local",
        "RUNNER_CONTAINER_NAME": "runner",
        "SUBNETS": ",".join(subnets),
        "SECURITY_GROUPS": sg,
        "ASSIGN_PUBLIC_IP": "false",
        "CAPACITY_PROVIDER_STRATEGY": "FARGATE_SPOT:1,FARGATE:0",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8765",
        "QUEUE_URL": queue,
        "STALE_CLAIM_AFTER_SECONDS": "600",
        "MAX_RECEIVE_COUNT": "10",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_LAMBDA_LOG_LEVEL": "info",
    }
    lines = "".join(f"{k}={v}\n" for k, v in env.items())
    with open(env_file, "w") as f:
        f.write("# Written by functions/dispatcher/events/moto-setup.py (moto ids change on every moto start)\n")
        f.write(lines)
    for k, v in env.items():
        print(f"export {k}='{v}'")
    print(f"# also written to {env_file}; DLQ: {dlq}", file=sys.stderr)


def fresh(path):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with open(path) as f:
        event = json.load(f)
    for r in event.get("Records", []):
        try:
            body = json.loads(r["body"])
        except (KeyError, ValueError):
            continue
        if isinstance(body, dict) and "acked_at" in body and "stale" not in r.get("messageId", ""):
            body["acked_at"] = now
            r["body"] = json.dumps(body, separators=(",", ":"))
    json.dump(event, sys.stdout, indent=2)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--endpoint", default="http://127.0.0.1:5001")
    s.add_argument("--env-file", default="/tmp/cma-dispatcher.env")
    f = sub.add_parser("fresh")
    f.add_argument("event")
    a = p.parse_args()
    if a.cmd == "setup":
        setup(a.endpoint, a.env_file)
    else:
        fresh(a.event)


if __name__ == "__main__":
    main()
