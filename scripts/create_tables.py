#!/usr/bin/env python3
"""Create the DynamoDB tables of template.yaml in DynamoDB Local.

template.yaml is the one definition of the tables: this script reads each
AWS::DynamoDB::Table resource from it and creates the same keys, indexes and
TTL under a name prefix, then prints `ENV_VAR=table-name` lines (UsersTable ->
USERS_TABLE) for the functions and tests to use.

usage: create_tables.py --endpoint http://127.0.0.1:8000 --prefix dev [--template template.yaml]
"""

import argparse
import pathlib
import re
import sys

import boto3
import yaml


class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping intrinsic functions (!Ref, !If, ...) as opaque values."""


TemplateLoader.add_multi_constructor("!", lambda loader, tag, node: {"Fn": tag})

# The keys CreateTable takes that we copy straight from the template.
COPIED = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


def table_definitions(template_path):
    template = yaml.load(pathlib.Path(template_path).read_text(), Loader=TemplateLoader)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            yield logical_id, resource["Properties"]


def env_name(logical_id):
    """UsersTable -> USERS_TABLE"""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id).upper()


def create(client, name, properties):
    request = {key: properties[key] for key in COPIED if key in properties}
    stream = properties.get("StreamSpecification")
    if stream:
        # CloudFormation names only the view type; CreateTable also wants it enabled.
        request["StreamSpecification"] = {"StreamEnabled": True, **stream}
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **request)
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--template", default=str(pathlib.Path(__file__).resolve().parent.parent / "template.yaml"))
    args = parser.parse_args()

    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    existing = set(client.list_tables().get("TableNames", []))
    for logical_id, properties in table_definitions(args.template):
        name = f"{args.prefix}-{logical_id}"
        if name not in existing:
            create(client, name, properties)
        print(f"{env_name(logical_id)}={name}")


if __name__ == "__main__":
    sys.exit(main())
