"""The collector's OpenAPI 3.1 description: `GET /openapi.json`, or `analyticspro collector --openapi`."""

from __future__ import annotations

from typing import Any

from ingestion.validation import EVENT_TYPES, MAX_EVENT_BYTES

EVENT_ENDPOINTS = {
    "track": ("Record an action a user performed", "track", ["event"]),
    "identify": ("Tie a user to their traits", "identify", []),
    "page": ("Record a page view", "page", []),
    "screen": ("Record a mobile screen view", "screen", []),
    "group": ("Associate a user with a group (account, company)", "group", ["groupId"]),
    "alias": ("Merge two identities (previousId becomes userId)", "alias", ["previousId", "userId"]),
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _responses(batch: bool) -> dict[str, Any]:
    return {
        "200": {
            "description": "Every event is durably written (to the sink, or to the local spool while the sink is down)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}},
        },
        "400": _error(
            "Malformed or over the limits (32 KB per event, 500 KB per batch request)"
            + ("; or some events invalid: the valid ones were accepted, `rejected` lists the others" if batch else "")
        ),
        "401": _error("Missing or unknown write key"),
        "503": _error("Neither the sink nor the spool can keep events now; retry after Retry-After seconds"),
    }


def _body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": schema, "example": example}
    return {
        "required": True,
        "description": "JSON, optionally gzipped (Content-Encoding: gzip); text/plain is accepted (analytics.js)",
        "content": {"application/json": content, "text/plain": content},
    }


_EXAMPLES: dict[str, dict[str, Any]] = {
    "track": {
        "userId": "user-42",
        "event": "button_clicked",
        "properties": {"button_id": "start_free_trial"},
        "timestamp": "2026-11-28T12:00:00.000Z",
        "messageId": "7f1b6c2e-2b5f-4c7e-9a51-1c1d0f3e2a10",
    },
    "identify": {"userId": "user-42", "traits": {"plan": "pro", "mrr": 99}, "messageId": "m-identify-1"},
    "page": {"anonymousId": "anon-9", "name": "Pricing", "properties": {"path": "/pricing"}, "messageId": "m-page-1"},
    "screen": {"userId": "user-42", "name": "Settings", "messageId": "m-screen-1"},
    "group": {"userId": "user-42", "groupId": "acme", "traits": {"plan": "enterprise"}, "messageId": "m-group-1"},
    "alias": {"previousId": "anon-9", "userId": "user-42", "messageId": "m-alias-1"},
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, (summary, kind, required) in EVENT_ENDPOINTS.items():
        schema = (
            {"allOf": [{"$ref": "#/components/schemas/Event"}, {"required": required}]}
            if required
            else {"$ref": "#/components/schemas/Event"}
        )
        paths[f"/v1/{name}"] = {
            "post": {
                "operationId": name,
                "summary": summary,
                "description": f"One `{kind}` event (its type is taken from the path). analytics.js's short path "
                f"`/v1/{name[0]}` is the same endpoint.",
                "security": [{"writeKey": []}, {}],
                "requestBody": _body(schema, _EXAMPLES[name]),
                "responses": _responses(batch=False),
            }
        }
    batch_schema = {"$ref": "#/components/schemas/Batch"}
    batch_example = {"batch": [{"type": "track", **_EXAMPLES["track"]}, {"type": "identify", **_EXAMPLES["identify"]}]}
    for name, summary in (("batch", "Send many events in one request"), ("import", "Same as /v1/batch")):
        paths[f"/v1/{name}"] = {
            "post": {
                "operationId": name,
                "summary": summary,
                "description": "Up to 500 KB of events; the batch's `context` and `sentAt` apply to every event "
                "without its own. analytics.js's `/v1/b` is the same endpoint.",
                "security": [{"writeKey": []}, {}],
                "requestBody": _body(batch_schema, batch_example),
                "responses": _responses(batch=True),
            }
        }
    paths["/v1/projects/{writeKey}/settings"] = {
        "get": {
            "operationId": "browserSettings",
            "summary": "The settings analytics.js loads from Segment's CDN: its Segment.io destination, sending here",
            "parameters": [{"name": "writeKey", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "`integrations['Segment.io'].apiHost` is this collector's `<host>/v1`"},
                "401": _error("Unknown write key"),
            },
        }
    }
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Whether the sink answers, and what waits in the spool",
            "responses": {
                "200": {
                    "description": "status ok or degraded (spooling)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AnalyticsPro collector",
            "version": "1",
            "description": "Segment's HTTP Tracking API: any Segment-compatible SDK sends here by changing only "
            "its host. The write key is the HTTP Basic username (password empty) or `writeKey` in the body.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "username: the write key; password: empty",
                }
            },
            "schemas": {
                "Event": {
                    "type": "object",
                    "description": f"A Segment event of at most {MAX_EVENT_BYTES:,} bytes. Needs userId or "
                    "anonymousId; `event` for track. messageId is derived from the content when missing.",
                    "properties": {
                        "type": {"type": "string", "enum": sorted(EVENT_TYPES)},
                        "messageId": {"type": "string", "maxLength": 256},
                        "userId": {"type": ["string", "integer"]},
                        "anonymousId": {"type": ["string", "integer"]},
                        "event": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                        "previousId": {"type": ["string", "integer"]},
                        "groupId": {"type": ["string", "integer"]},
                        "properties": {"type": "object"},
                        "traits": {"type": "object"},
                        "context": {"type": "object"},
                        "integrations": {"type": "object"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "originalTimestamp": {"type": "string", "format": "date-time"},
                        "sentAt": {"type": "string", "format": "date-time"},
                        "writeKey": {"type": "string"},
                    },
                    "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
                },
                "Batch": {
                    "type": "object",
                    "required": ["batch"],
                    "properties": {
                        "batch": {
                            "type": "array",
                            "items": {"allOf": [{"$ref": "#/components/schemas/Event"}, {"required": ["type"]}]},
                        },
                        "context": {"type": "object"},
                        "integrations": {"type": "object"},
                        "sentAt": {"type": "string", "format": "date-time"},
                        "writeKey": {"type": "string"},
                    },
                },
                "Success": {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}},
                "Error": {
                    "type": "object",
                    "required": ["success", "code", "message"],
                    "properties": {
                        "success": {"const": False},
                        "code": {
                            "type": "string",
                            "examples": ["invalid_json", "request_too_large", "invalid_events", "unauthorized"],
                        },
                        "message": {"type": "string", "description": "what is wrong and what to do"},
                        "accepted": {"type": "integer", "description": "events of the request that were accepted"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "messageId": {"type": ["string", "null"]},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "sink": {"type": "string"},
                        "sink_ok": {"type": "boolean"},
                        "spooled_batches": {"type": "integer"},
                        "spooled_bytes": {"type": "integer"},
                        "accepted_events": {"type": "integer"},
                    },
                },
            },
        },
    }
