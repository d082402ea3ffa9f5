#!/usr/bin/env python3
"""Local stand-in for Lambda's DynamoDB stream poller (make dev, make test).

Reads the users table's stream in DynamoDB Local, keeps what the template's
FilterCriteria keeps (users' items), and invokes the publish-events function
served by `cargo lambda watch` with batches shaped like Lambda's DynamoDB
event. Like the event source mapping with ReportBatchItemFailures, a batch
the function reports a failure in is delivered again from that record (up
to --retries times, then the range is dropped and said so: the dead-letter
queue's part).

With --events-queue it also prints every event that moto's EventBridge
delivered to that SQS queue (make dev sets up the bus, a rule and the queue),
so a person sees them appear.

usage: stream_relay.py --dynamodb URL --table NAME --invoke URL [--moto URL --events-queue NAME]
"""

import argparse
import base64
import json
import sys
import time
import urllib.request

import boto3

FUNCTION = "publish-events"
BATCH_SIZE = 100


def say(message):
    print(f"stream relay: {message}", file=sys.stderr, flush=True)


def lambda_value(value):
    """boto3's stream attribute values, as Lambda's JSON event spells them."""
    (kind, inner), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in inner]}
    if kind == "M":
        return {"M": {k: lambda_value(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [lambda_value(v) for v in inner]}
    return {kind: inner}


def lambda_record(record, stream_arn):
    change = record["dynamodb"]
    out = {k: change[k] for k in ("SequenceNumber", "SizeBytes", "StreamViewType") if k in change}
    out["ApproximateCreationDateTime"] = int(change["ApproximateCreationDateTime"].timestamp())
    for key in ("Keys", "NewImage", "OldImage"):
        if key in change:
            out[key] = {k: lambda_value(v) for k, v in change[key].items()}
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "eventSourceARN": stream_arn,
        "dynamodb": out,
    }


def is_user(record):
    """The template's filter: {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}."""
    return record["dynamodb"].get("Keys", {}).get("pk", {}).get("S", "").startswith("USER#")


def invoke(url, records):
    request = urllib.request.Request(
        f"{url}/2015-03-31/functions/{FUNCTION}/invocations",
        data=json.dumps({"Records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"{}")


def deliver(url, records, retries):
    """One batch, again from the first failed record until it is all handled."""
    attempt = 0
    while records:
        try:
            answer = invoke(url, records)
            failures = [f["itemIdentifier"] for f in answer.get("batchItemFailures", [])]
        except Exception as err:  # the function crashed or is not up yet: the whole batch again
            say(f"invocation failed ({err}); delivering the batch again")
            failures = [records[0]["dynamodb"]["SequenceNumber"]]
        if not failures:
            return
        attempt += 1
        first = min(failures, key=int)
        at = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == first)
        if attempt > retries:
            say(f"records from {first} failed {retries} retries; dropped (the dead-letter queue's part)")
            return
        records = records[at:]
        time.sleep(min(0.1 * 2**attempt, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dynamodb", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--invoke", required=True, help="cargo lambda watch's base URL")
    parser.add_argument("--retries", type=int, default=10)
    parser.add_argument("--moto")
    parser.add_argument("--events-queue")
    args = parser.parse_args()

    dynamodb = boto3.client("dynamodb", endpoint_url=args.dynamodb)
    streams = boto3.client("dynamodbstreams", endpoint_url=args.dynamodb)
    stream_arn = dynamodb.describe_table(TableName=args.table)["Table"]["LatestStreamArn"]
    queue = None
    if args.events_queue:
        sqs = boto3.client("sqs", endpoint_url=args.moto)
        queue = sqs.get_queue_url(QueueName=args.events_queue)["QueueUrl"]
    iterators = {}  # shard id -> next iterator (None: closed and read to its end)
    last = {}  # shard id -> sequence number of the last record read

    def iterator_for(shard_id):
        if shard_id in last:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last[shard_id]}
        else:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
        return streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **position)["ShardIterator"]

    say(f"{args.table}'s stream -> {FUNCTION}")
    while True:
        for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in iterators:
                iterators[shard["ShardId"]] = iterator_for(shard["ShardId"])
        idle = True
        for shard_id, iterator in list(iterators.items()):
            if iterator is None:
                continue
            try:
                page = streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
            except (streams.exceptions.ExpiredIteratorException, streams.exceptions.TrimmedDataAccessException):
                # Iterators expire (DynamoDB Local's sooner than AWS's 15 minutes): start again after the last record read.
                iterators[shard_id] = iterator_for(shard_id)
                continue
            iterators[shard_id] = page.get("NextShardIterator")
            if page["Records"]:
                idle = False
                last[shard_id] = page["Records"][-1]["dynamodb"]["SequenceNumber"]
            records = [lambda_record(r, stream_arn) for r in page["Records"] if is_user(r)]
            if records:
                deliver(args.invoke, records, args.retries)
        if queue:
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                event = json.loads(message["Body"])
                say(f"event {event['detail-type']} {json.dumps(event['detail'])}")
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if idle:
            time.sleep(0.25)  # Lambda's poller reads each shard about four times a second


if __name__ == "__main__":
    main()
