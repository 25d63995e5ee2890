//! The OpenAPI 3.0 description of `/api/v2`, served at `/api/v2/openapi.json`.
//!
//! Every schema is generated from the API types (`perigee-api`, and relay-core's edge
//! configuration) by [`generated`], so the document cannot drift from what the server
//! serializes and the CLI decodes; the operations table (which route takes and answers which
//! type, with which statuses) is written next to the handlers.
//! Checked both ways: a unit test requires every route the routers register to be described
//! (and nothing else), and the test suite runs schemathesis against a live server with this
//! document (no 5xx, every response matching its schema).

use serde_json::{json, Map, Value};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Names of workspaces, organizations, users, providers and satellites (DNS labels).
fn label() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "minLength": 1, "maxLength": 32 })
}

fn nullable(t: &str) -> Value {
    json!({ "type": t, "nullable": true })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn object(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props })
}

/// A closed request body (the server refuses unknown fields).
fn closed(required: &[&str], props: Value) -> Value {
    let mut o = object(required, props);
    o["additionalProperties"] = json!(false);
    o
}

fn error_responses(codes: &[u16]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        let desc = match c {
            400 => "A field is wrong: `field` names it, `error` says why; nothing changed",
            401 => "No valid token",
            403 => "The caller may not do this",
            404 => "No such object",
            409 => "Conflicts with the current state (a name taken, an invariant); nothing changed",
            415 => "The body is not JSON",
            _ => "Error",
        };
        m.insert(
            c.to_string(),
            json!({ "description": desc, "content": { "application/json": { "schema": r("Error") } } }),
        );
    }
    m
}

/// One operation: `body` is the request schema (if any), `ok` the 200 schema, `errors` the
/// documented refusals.
fn op(
    summary: &str,
    tag: &str,
    body: Option<Value>,
    ok: Value,
    errors: &[u16],
    auth: bool,
) -> Value {
    let mut responses = error_responses(errors);
    if body.is_some() {
        responses.extend(error_responses(&[400, 415]));
    }
    if auth {
        responses.extend(error_responses(&[401]));
    }
    responses.insert(
        "200".into(),
        json!({ "description": "OK", "content": { "application/json": { "schema": ok } } }),
    );
    let mut o = json!({ "summary": summary, "tags": [tag], "responses": responses });
    if let Some(b) = body {
        o["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": b } } });
    }
    if !auth {
        o["security"] = json!([]);
    }
    o
}

fn name_param() -> Value {
    json!([{ "name": "name", "in": "path", "required": true, "schema": label() }])
}

fn with_name(mut o: Value) -> Value {
    o["parameters"] = name_param();
    o
}

fn with_string_param(name: &str, mut o: Value) -> Value {
    o["parameters"] =
        json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }]);
    o
}

fn unshare_op() -> Value {
    let mut o = op(
        "Stop sharing a workspace port (it is private again)",
        "urls",
        None,
        object(&["deleted"], json!({ "deleted": { "type": "integer" } })),
        &[400, 404],
        true,
    );
    o["parameters"] = json!([
        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
        { "name": "port", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1, "maximum": 65535 } }
    ]);
    o
}

fn deleted() -> Value {
    object(&["deleted"], json!({ "deleted": { "type": "string" } }))
}

/// The components generated from the API types, under the names the operations use: JSON
/// Schemas in OpenAPI 3.0's dialect (`nullable`, `#/components/schemas/` references).
pub fn generated() -> Map<String, Value> {
    use perigee_api::{devurls, orgs, providers, satellites, users, workspaces};
    let mut g = schemars::gen::SchemaSettings::openapi3().into_generator();
    let mut named: Vec<(&str, schemars::schema::Schema)> = vec![
        ("User", g.subschema_for::<workspaces::User>()),
        ("UserView", g.subschema_for::<orgs::UserView>()),
        ("Org", g.subschema_for::<orgs::Org>()),
        ("OrgSummary", g.subschema_for::<orgs::OrgView>()),
        (
            "WorkspaceReport",
            g.subschema_for::<providers::WorkspaceReport>(),
        ),
        ("AgentStatus", g.subschema_for::<workspaces::AgentStatus>()),
        ("Workspace", g.subschema_for::<workspaces::WorkspaceView>()),
        ("Ticket", g.subschema_for::<workspaces::TicketResponse>()),
        ("Satellite", g.subschema_for::<satellites::SatelliteView>()),
        ("DevUrl", g.subschema_for::<devurls::DevUrl>()),
        ("ApiToken", g.subschema_for::<users::TokenView>()),
        // Requests and the answers the operations describe inline otherwise.
        ("TokenRequest", g.subschema_for::<users::TokenRequest>()),
        ("NewToken", g.subschema_for::<users::NewToken>()),
        ("Revoked", g.subschema_for::<users::Revoked>()),
        ("AddKey", g.subschema_for::<users::AddKey>()),
        ("KeyAdded", g.subschema_for::<users::KeyAdded>()),
        (
            "PasswordRequest",
            g.subschema_for::<orgs::PasswordRequest>(),
        ),
        ("PasswordSet", g.subschema_for::<orgs::PasswordSet>()),
        ("CreateUser", g.subschema_for::<orgs::CreateUser>()),
        ("UserCreated", g.subschema_for::<orgs::UserCreated>()),
        ("CreateOrg", g.subschema_for::<orgs::CreateOrg>()),
        ("AddMember", g.subschema_for::<orgs::AddMember>()),
        ("MemberAdded", g.subschema_for::<orgs::MemberAdded>()),
        (
            "CreateWorkspace",
            g.subschema_for::<workspaces::CreateWorkspace>(),
        ),
        (
            "TicketRequest",
            g.subschema_for::<workspaces::TicketRequest>(),
        ),
        ("ShareRequest", g.subschema_for::<devurls::ShareRequest>()),
        ("Unshared", g.subschema_for::<devurls::Unshared>()),
        (
            "SatelliteList",
            g.subschema_for::<satellites::SatelliteList>(),
        ),
        (
            "CreateSatellite",
            g.subschema_for::<satellites::CreateSatellite>(),
        ),
        (
            "SatelliteCreated",
            g.subschema_for::<satellites::SatelliteCreated>(),
        ),
        ("KeyRotated", g.subschema_for::<satellites::KeyRotated>()),
        (
            "DevUrlRedeemRequest",
            g.subschema_for::<satellites::DevUrlRedeemRequest>(),
        ),
        (
            "DevUrlRedeemed",
            g.subschema_for::<satellites::DevUrlRedeemed>(),
        ),
        (
            "ProviderHeartbeat",
            g.subschema_for::<providers::ProviderHeartbeat>(),
        ),
        (
            "HeartbeatAnswer",
            g.subschema_for::<providers::HeartbeatAnswer>(),
        ),
        (
            "AgentTokenRequest",
            g.subschema_for::<providers::AgentTokenRequest>(),
        ),
        (
            "AgentTokenAnswer",
            g.subschema_for::<providers::AgentTokenAnswer>(),
        ),
        (
            "CreateProvider",
            g.subschema_for::<providers::CreateProvider>(),
        ),
        (
            "CordonRequest",
            g.subschema_for::<providers::CordonRequest>(),
        ),
        ("Deleted", g.subschema_for::<workspaces::Deleted>()),
        (
            "ProviderDeleted",
            g.subschema_for::<providers::ProviderDeleted>(),
        ),
        ("SshKey", g.subschema_for::<users::SshKey>()),
        ("Provider", g.subschema_for::<providers::Provider>()),
        (
            "ProviderCreated",
            g.subschema_for::<providers::ProviderCreated>(),
        ),
        ("Edited", g.subschema_for::<providers::Edited>()),
        (
            "ProviderEdit",
            g.subschema_for::<perigee_api::provider_settings::ProviderEdit>(),
        ),
        ("Error", g.subschema_for::<workspaces::ErrorBody>()),
        ("Region", g.subschema_for::<satellites::Region>()),
        (
            "EdgeConfig",
            g.subschema_for::<relay_core::mesh::EdgeConfig>(),
        ),
        (
            "SatelliteHeartbeat",
            g.subschema_for::<satellites::SatelliteHeartbeat>(),
        ),
    ];
    let defs = g.take_definitions();
    let mut out = Map::new();
    /// OpenAPI 3.0 ignores the siblings of a `$ref` (its `nullable` among them): wrap such
    /// references in `allOf`, as the spec intends.
    fn wrap_refs(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.len() > 1 {
                    if let Some(r) = m.remove("$ref") {
                        m.insert("allOf".into(), json!([{ "$ref": r }]));
                    }
                }
                m.values_mut().for_each(wrap_refs);
            }
            Value::Array(a) => a.iter_mut().for_each(wrap_refs),
            _ => {}
        }
    }
    // Every type the named ones refer to, under its own name.
    for (name, schema) in &defs {
        let mut v = serde_json::to_value(schema).unwrap_or_default();
        wrap_refs(&mut v);
        out.insert(name.clone(), v);
    }
    // The operations' names: the definition itself where the type is named differently.
    for (name, schema) in named.drain(..) {
        let v = serde_json::to_value(&schema).unwrap_or_default();
        let resolved = v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|n| defs.get(n))
            .and_then(|d| serde_json::to_value(d).ok())
            .unwrap_or(v);
        let mut resolved = resolved;
        wrap_refs(&mut resolved);
        out.insert(name.to_owned(), resolved);
    }
    out
}

fn schemas() -> Value {
    Value::Object(generated())
}

/// The whole document.
pub fn document() -> Value {
    let any = || json!({ "type": "object" });
    let s = || json!({ "type": "string" });
    let name_body = |k: &str| closed(&[k], json!({ k: s() }));
    let paths = json!({
        "/api/v2/buildinfo": { "get": op("Server version", "meta", None, object(&["version"], json!({ "version": s() })), &[], false) },
        "/api/v2/openapi.json": { "get": op("This document", "meta", None, any(), &[], false) },
        "/api/v2/users/me": { "get": op("The caller", "users", None, r("User"), &[], true) },
        "/api/v2/users/me/tokens": {
            "post": op("Create an API token for the caller (shown once)", "users",
                Some(r("TokenRequest")), r("NewToken"), &[], true),
            "get": op("The caller's API tokens (never the secrets); `current` marks the one used", "users", None, array(r("ApiToken")), &[], true)
        },
        "/api/v2/users/me/password": { "put": op("Set the caller's password for browser sign-in (10-1024 characters)", "users",
            Some(r("PasswordRequest")), r("PasswordSet"), &[], true) },
        "/api/v2/users/me/tokens/{id}": { "delete": with_string_param("id",
            op("Revoke one of the caller's API tokens: it stops authenticating, and edges refuse tickets issued to it", "users", None,
                r("Revoked"), &[404], true)) },
        "/api/v2/users/me/ssh-keys": {
            "get": op("The caller's SSH public keys", "users", None, array(r("SshKey")), &[], true),
            "post": op("Add an SSH public key (`TYPE BASE64 [COMMENT]`); adding one already there changes nothing", "users",
                Some(r("AddKey")),
                r("KeyAdded"),
                &[409], true)
        },
        "/api/v2/users/me/ssh-keys/{fingerprint}": { "delete": with_string_param("fingerprint",
            op("Remove one of the caller's SSH keys (its fingerprint percent-encoded)", "users", None, deleted(), &[404], true)) },
        "/api/v2/workspaceagent/authorized-keys": { "get": op("The workspace owner's SSH keys (agent token)", "workspaces", None, array(r("SshKey")), &[], true) },
        "/api/v2/users": {
            "get": op("Users with their organizations (admins, site managers)", "users", None, array(r("UserView")), &[403], true),
            "post": op("Create a user (admins); returns their first API token once", "users",
                Some(r("CreateUser")),
                r("UserCreated"),
                &[403, 409], true)
        },
        "/api/v2/orgs": {
            "get": op("Organizations (yours; all for admins and site managers)", "orgs", None, array(r("OrgSummary")), &[], true),
            "post": op("Create an organization (admins); it is on the built-in provider's allowlist", "orgs",
                Some(r("CreateOrg")), r("Org"), &[403, 409], true)
        },
        "/api/v2/orgs/{name}/members": { "post": with_name(op("Add a member (admins)", "orgs",
            Some(r("AddMember")), r("MemberAdded"), &[403, 404], true)) },
        "/api/v2/workspaces": {
            "get": op("Your workspaces", "workspaces", None, array(r("Workspace")), &[], true),
            "post": op("Create a workspace on a provider (the default one unless named)", "workspaces",
                Some(r("CreateWorkspace")),
                r("Workspace"), &[403, 404, 409], true)
        },
        "/api/v2/workspaces/{name}": {
            "get": with_name(op("One of your workspaces", "workspaces", None, r("Workspace"), &[404], true)),
            "delete": with_name(op("Delete one of your workspaces", "workspaces", None, deleted(), &[404], true))
        },
        "/api/v2/urls": { "get": op("Your shared dev URLs, in every workspace", "urls", None, array(r("DevUrl")), &[], true) },
        "/api/v2/workspaces/{name}/urls": {
            "get": with_name(op("The workspace's shared dev URLs", "urls", None, array(r("DevUrl")), &[404], true)),
            "post": with_name(op("Share a workspace port as a dev URL (again: change its level or name); capped by the deployment's maximum", "urls",
                Some(r("ShareRequest")),
                r("DevUrl"), &[403, 404, 409], true))
        },
        "/api/v2/workspaces/{name}/urls/{port}": { "delete": unshare_op() },
        "/api/v2/workspaces/{name}/ticket": { "post": with_name(op("A connection ticket for ports of the workspace", "workspaces",
            Some(r("TicketRequest")),
            r("Ticket"), &[403, 404, 409], true)) },
        "/api/v2/workspaces/{name}/stop": { "post": with_name(op("Stop the workspace (its home and token stay)", "workspaces",
            None, r("Workspace"), &[403, 404], true)) },
        "/api/v2/workspaces/{name}/start": { "post": with_name(op("Start a stopped workspace", "workspaces",
            None, r("Workspace"), &[403, 404], true)) },
        "/api/v2/workspaceagent/e2e-key": { "post": op("An agent reports its end-to-end key's fingerprint (agent token)", "workspaces",
            Some(closed(&["fingerprint"], json!({ "fingerprint": { "type": "string", "pattern": "^[0-9a-f]{64}$" } }))),
            object(&["workspace_id"], json!({ "workspace_id": s() })), &[], true) },
        "/api/v2/regions": { "get": op("Edges users may enter through", "satellites", None, array(r("Region")), &[], true) },
        "/api/v2/satellites": {
            "get": op("Satellites and their health (admins)", "satellites", None,
                r("SatelliteList"),
                &[403], true),
            "post": op("Register a satellite (admins); returns its token once", "satellites",
                Some(r("CreateSatellite")),
                r("SatelliteCreated"),
                &[403, 409], true)
        },
        "/api/v2/satellites/{name}": { "delete": with_name(op("Remove a satellite (admins)", "satellites", None, deleted(), &[403, 404], true)) },
        "/api/v2/satellites/register": { "post": op("A satellite registers (satellite token)", "satellites",
            Some(r("SatelliteHeartbeat")), r("EdgeConfig"), &[403], true) },
        "/api/v2/satellites/heartbeat": { "post": op("A satellite reports in (satellite token)", "satellites",
            Some(r("SatelliteHeartbeat")), r("EdgeConfig"), &[403], true) },
        "/api/v2/satellites/agent-auth": { "post": op("A satellite asks whose an agent token is (satellite token)", "satellites",
            Some(name_body("token")),
            object(&["workspace_id", "workspace_name"], json!({ "workspace_id": s(), "workspace_name": s() })),
            &[], true) },
        "/api/v2/satellites/devurl-resolve": { "post": op("A satellite asks who may open one of its dev URL hosts (satellite token): \"sign_in\", \"not_found\", {\"deny\": reason}, {\"unavailable\": reason} or {\"allow\": {workspace_id, port, https, home, ticket}}", "satellites",
            Some(closed(&["host"], json!({ "host": s(), "viewer": nullable("string") }))),
            json!({}), &[409], true) },
        "/api/v2/satellites/devurl-redeem": { "post": op("A satellite redeems a browser's one-time sign-in code for one of its hosts (satellite token)", "satellites",
            Some(r("DevUrlRedeemRequest")),
            r("DevUrlRedeemed"), &[409], true) },
        "/api/v2/keys/rotate": { "post": op("Rotate the ticket-signing key (admins)", "satellites", None,
            r("KeyRotated"), &[403], true) },
        "/api/v2/providers": {
            "get": op("Workspace providers", "providers", None, array(r("Provider")), &[], true),
            "post": op("Create a remote provider (admins, site managers); returns its REMOTE token once and the Helm command", "providers",
                Some(r("CreateProvider")),
                r("ProviderCreated"),
                &[403, 409], true)
        },
        "/api/v2/providers/heartbeat": { "post": op("A provider's deployment reports in (REMOTE token)", "providers",
            Some(r("ProviderHeartbeat")),
            r("HeartbeatAnswer"),
            &[], true) },
        "/api/v2/providers/agent-token": { "post": op("A provider's deployment gets the agent token of a workspace it starts (REMOTE token; the previous token stops working)", "providers",
            Some(r("AgentTokenRequest")), r("AgentTokenAnswer"), &[404], true) },
        "/api/v2/providers/{name}": {
            "get": with_name(op("One provider", "providers", None, r("Provider"), &[404], true)),
            "patch": with_name(op("Edit a provider as a whole (admins, site managers)", "providers",
                Some(r("ProviderEdit")),
                r("Edited"),
                &[403, 404, 409], true)),
            "delete": with_name(op("Delete a provider with no workspaces (admins, site managers)", "providers", None, deleted(), &[403, 404, 409], true))
        },
        "/api/v2/providers/{name}/cordon": { "post": with_name(op("Stop new workspaces there (admins, site managers)", "providers",
            Some(r("CordonRequest")), r("Provider"), &[403, 404], true)) },
        "/api/v2/providers/{name}/uncordon": { "post": with_name(op("Take new workspaces again (admins, site managers)", "providers",
            None, r("Provider"), &[403, 404], true)) },
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "perigee API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Control-plane REST API. Authenticate with `Authorization: Bearer TOKEN` (API, satellite or provider token as each operation says); tokens never go in URLs."
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `(path, method)` pairs registered by the routers, read from their source.
    fn routes_in_source() -> Vec<(String, String)> {
        let mut out = Vec::new();
        for src in [
            include_str!("api.rs"),
            include_str!("edges_api.rs"),
            include_str!("orgs_api.rs"),
            include_str!("providers_api.rs"),
            include_str!("ssh_keys_api.rs"),
            include_str!("tokens_api.rs"),
            include_str!("devurls_api.rs"),
            include_str!("lib.rs"),
        ] {
            let flat: String = src
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("( ", "(");
            for part in flat.split(".route(\"").skip(1) {
                let (path, rest) = part.split_once('"').unwrap();
                let call = rest.split(".route(").next().unwrap();
                let call = call.split(".with_state(").next().unwrap();
                for m in ["get", "post", "patch", "delete", "put"] {
                    if call.contains(&format!(" {m}(")) || call.contains(&format!(".{m}(")) {
                        out.push((path.to_owned(), m.to_owned()));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn schemas_come_from_the_api_types() {
        let doc = document();
        let generated = generated();
        assert!(generated.len() >= 40, "{}", generated.len());
        for (name, schema) in &generated {
            assert_eq!(&doc["components"]["schemas"][name], schema, "{name}");
        }
        // A field the type has is in the document with its type's words.
        let ws = &doc["components"]["schemas"]["Workspace"]["properties"];
        assert!(ws["agent_pid"]["nullable"] == true, "{ws}");
        assert!(
            ws["agent"]["allOf"].is_array(),
            "a nullable reference is wrapped: {ws}"
        );
        // Requests too, with the constraints the server enforces.
        let body = &doc["paths"]["/api/v2/workspaces"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        assert_eq!(body["$ref"], "#/components/schemas/CreateWorkspace");
        let create = &doc["components"]["schemas"]["CreateWorkspace"];
        assert_eq!(create["additionalProperties"], false, "{create}");
        assert_eq!(create["properties"]["name"]["maxLength"], 32, "{create}");
    }

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let doc = document();
        let mut described: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (p.clone(), m.clone()))
            })
            .collect();
        described.sort();
        let routes = routes_in_source();
        assert!(routes.len() >= 27, "{routes:?}");
        assert_eq!(described, routes);
        // Every reference resolves.
        let text = doc.to_string();
        for name in text.split("#/components/schemas/").skip(1) {
            let name = name.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
