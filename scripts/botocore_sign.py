#!/usr/bin/env python3
"""Re-sign a request that a server received, with botocore, for interop tests.

Used by tests/it/botocore.rs. Reads one JSON object on stdin:

    {"method": "POST", "url": "http://127.0.0.1:1234/runtimes/...?qualifier=DEFAULT",
     "headers": [["name", "value"], ...], "body_base64": "...",
     "access_key_id": "...", "secret_access_key": "...", "session_token": null,
     "region": "us-west-2", "service": "bedrock-agentcore",
     "runtime_arn": "arn:...", "qualifier": "DEFAULT"}

The request is rebuilt as the client built it before signing: the headers
its Authorization header lists as signed, minus the ones SigV4 itself adds
(x-amz-date, x-amz-security-token), with x-amz-content-sha256 recomputed
from the body as received. botocore's SigV4Auth (the signer boto3 uses for
every service but S3) then signs it at the request's own x-amz-date.

Prints one JSON object: botocore's "authorization" header, its
"canonical_request", the received body's "body_sha256", and, when
runtime_arn is given, "invoke_agent_runtime_path": the path and query
botocore's own bedrock-agentcore client produces for InvokeAgentRuntime.
"""

import base64
import datetime
import hashlib
import json
import sys

import botocore.auth
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ADDED_BY_SIGV4 = {"x-amz-date", "x-amz-security-token", "authorization"}


def signed_header_names(authorization):
    for part in authorization.split(","):
        part = part.strip()
        if part.startswith("SignedHeaders="):
            return part[len("SignedHeaders="):].split(";")
    raise SystemExit("no SignedHeaders in the Authorization header")


def resign(spec):
    received = {}
    for name, value in spec["headers"]:
        name = name.lower()
        received[name] = f"{received[name]},{value}" if name in received else value
    body = base64.b64decode(spec["body_base64"])
    body_sha256 = hashlib.sha256(body).hexdigest()

    headers = {}
    for name in signed_header_names(received["authorization"]):
        if name in ADDED_BY_SIGV4:
            continue
        headers[name] = body_sha256 if name == "x-amz-content-sha256" else received[name]

    request = AWSRequest(method=spec["method"], url=spec["url"], headers=headers, data=body)
    amz_date = datetime.datetime.strptime(received["x-amz-date"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda *args, **kwargs: amz_date
    credentials = Credentials(
        spec["access_key_id"], spec["secret_access_key"], spec.get("session_token")
    )
    signer = SigV4Auth(credentials, spec["service"], spec["region"])
    signer.add_auth(request)
    return {
        "authorization": request.headers["Authorization"],
        "canonical_request": signer.canonical_request(request),
        "body_sha256": body_sha256,
    }


class Captured(Exception):
    pass


def invoke_agent_runtime_path(spec):
    """The path and query botocore's InvokeAgentRuntime sends, never sent."""
    session = botocore.session.get_session()
    base = spec["url"].split("/", 3)
    client = session.create_client(
        "bedrock-agentcore",
        region_name=spec["region"],
        endpoint_url="/".join(base[:3]),
        aws_access_key_id=spec["access_key_id"],
        aws_secret_access_key=spec["secret_access_key"],
    )

    def capture(request, **kwargs):
        raise Captured(request.url)

    client.meta.events.register("before-send.bedrock-agentcore.InvokeAgentRuntime", capture)
    try:
        client.invoke_agent_runtime(
            agentRuntimeArn=spec["runtime_arn"],
            qualifier=spec["qualifier"],
            runtimeSessionId="s" * 33,
            payload=b"{}",
        )
    except Captured as captured:
        url = captured.args[0]
        return "/" + url.split("/", 3)[3]
    raise SystemExit("botocore sent the request instead of handing it to the capture hook")


def main():
    spec = json.load(sys.stdin)
    out = resign(spec)
    if spec.get("runtime_arn"):
        out["invoke_agent_runtime_path"] = invoke_agent_runtime_path(spec)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
