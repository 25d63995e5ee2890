//! A server that speaks the part of the Kubernetes API the provisioner uses (create, get,
//! list by label, delete of namespaced core/v1 objects), over plain HTTP on loopback, with
//! Kubernetes' own status objects for errors. Pods get a status as a cluster would give
//! them: running, or stuck pulling an image named `…no-such-image…`, or unschedulable when
//! their node selector asks for `pool: nowhere`.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// (plural, namespace, name).
type Key = (String, String, String);

/// Objects by (kind, namespace, name), and the log of calls.
#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<BTreeMap<Key, Value>>>,
    pub calls: Arc<Mutex<Vec<String>>>,
    version: Arc<Mutex<u64>>,
}

const KINDS: &[(&str, &str)] = &[
    ("pods", "Pod"),
    ("secrets", "Secret"),
    ("persistentvolumeclaims", "PersistentVolumeClaim"),
    ("serviceaccounts", "ServiceAccount"),
];

fn status(code: StatusCode, reason: &str, message: String) -> (StatusCode, Json<Value>) {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()
        })),
    )
}

fn pod_status(pod: &Value) -> Value {
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or("");
    let name = pod["spec"]["containers"][0]["name"].clone();
    if image.contains("no-such-image") {
        return json!({
            "phase": "Pending",
            "containerStatuses": [{
                "name": name, "ready": false, "restartCount": 0, "image": image, "imageID": "",
                "state": { "waiting": { "reason": "ErrImagePull",
                  "message": format!("failed to pull image \"{image}\": not found") } }
            }]
        });
    }
    if pod["spec"]["nodeSelector"]["pool"] == "nowhere" {
        return json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
            }]
        });
    }
    json!({
        "phase": "Running",
        "conditions": [{ "type": "Ready", "status": "True" }],
        "containerStatuses": [{
            "name": name, "ready": true, "restartCount": 0, "image": image, "imageID": "sha256:0",
            "state": { "running": { "startedAt": "2026-11-23T00:00:00Z" } }
        }]
    })
}

fn kind_of(plural: &str) -> Option<&'static str> {
    KINDS.iter().find(|(p, _)| *p == plural).map(|(_, k)| *k)
}

async fn create(
    State(api): State<FakeApi>,
    Path((ns, plural)): Path<(String, String)>,
    Json(mut obj): Json<Value>,
) -> (StatusCode, Json<Value>) {
    api.calls.lock().unwrap().push(format!("POST {plural}"));
    let Some(kind) = kind_of(&plural) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({plural})"),
        );
    };
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    if obj["kind"] != kind {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("kind {} is not {kind}", obj["kind"]),
        );
    }
    if obj["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the object does not match the namespace on the request".into(),
        );
    }
    let key = (plural.clone(), ns.clone(), name.clone());
    let mut objects = api.objects.lock().unwrap();
    if objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        );
    }
    let rv = {
        let mut v = api.version.lock().unwrap();
        *v += 1;
        *v
    };
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    obj["metadata"]["creationTimestamp"] = json!("2026-11-23T00:00:00Z");
    if plural == "pods" {
        obj["status"] = pod_status(&obj);
    }
    if plural == "secrets" {
        // The API server folds stringData into data (base64).
        if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            use base64::Engine as _;
            let data: serde_json::Map<String, Value> = sd
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!(base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or(""))),
                    )
                })
                .collect();
            obj["data"] = Value::Object(data);
        }
    }
    objects.insert(key, obj.clone());
    (StatusCode::CREATED, Json(obj))
}

/// GET or DELETE of one object.
fn one(
    api: &FakeApi,
    verb: &str,
    (ns, plural, name): (String, String, String),
) -> (StatusCode, Json<Value>) {
    api.calls
        .lock()
        .unwrap()
        .push(format!("{verb} {plural}/{name}"));
    let key = (plural.clone(), ns, name.clone());
    let mut objects = api.objects.lock().unwrap();
    let found = if verb == "DELETE" {
        objects.remove(&key)
    } else {
        objects.get(&key).cloned()
    };
    match found {
        Some(o) => (StatusCode::OK, Json(o)),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
        ),
    }
}

async fn read(
    State(api): State<FakeApi>,
    Path(key): Path<(String, String, String)>,
) -> (StatusCode, Json<Value>) {
    one(&api, "GET", key)
}

async fn remove(
    State(api): State<FakeApi>,
    Path(key): Path<(String, String, String)>,
) -> (StatusCode, Json<Value>) {
    one(&api, "DELETE", key)
}

async fn list(
    State(api): State<FakeApi>,
    Path((ns, plural)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    api.calls.lock().unwrap().push(format!("LIST {plural}"));
    let Some(kind) = kind_of(&plural) else {
        return status(StatusCode::NOT_FOUND, "NotFound", plural);
    };
    let wanted: Vec<(String, String)> = q
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let items: Vec<Value> = api
        .objects
        .lock()
        .unwrap()
        .iter()
        .filter(|((p, n, _), _)| *p == plural && *n == ns)
        .map(|(_, o)| o.clone())
        .filter(|o| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][k] == json!(v))
        })
        .collect();
    let rv = api.version.lock().unwrap().to_string();
    (
        StatusCode::OK,
        Json(
            json!({ "apiVersion": "v1", "kind": format!("{kind}List"), "metadata": { "resourceVersion": rv }, "items": items }),
        ),
    )
}

impl FakeApi {
    /// Serves on a loopback port; returns the API and its URL.
    pub async fn start() -> (Self, String) {
        let api = FakeApi::default();
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/{plural}", get(list).post(create))
            .route(
                "/api/v1/namespaces/{ns}/{plural}/{name}",
                get(read).delete(remove),
            )
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (api, url)
    }

    /// A stored object.
    pub fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .get(&(plural.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Names of the stored objects of a kind.
    pub fn names(&self, plural: &str) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(p, _, _)| p == plural)
            .map(|(_, _, n)| n.clone())
            .collect()
    }
}

/// A kube client for `url`.
pub fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}
