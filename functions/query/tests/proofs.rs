//! `GET /checkpoint`, `GET /events/{id}/proof` and `GET /consistency` through the handler,
//! against the real PostgreSQL with checkpoints signed by the real checkpointer (its signer
//! and S3 copy in memory), read as the reader role. Each test has a database of its own.

mod common;

use common::log::{events, Api, STACK};

use sentinel_domain::checkpoint::open_checkpoint;
use sentinel_domain::log;
use sentinel_domain::merkle::{self, Hash};
use sentinel_domain::AuditEvent;
use sentinel_lambda::identity::Scope;
use serde_json::{json, Value};

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::parse_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_client_checks_an_events_proof_with_the_public_key_alone() {
    let api = Api::new().await;
    let stored = events(21);
    api.store(&stored).await;
    api.checkpoint().await;

    let (status, body) = api.get("/events/evt-13/proof", "").await;

    assert_eq!(status, 200, "{body}");
    // What a client does: open the signed note with the public key, hash the canonical
    // record, and walk the path to the signed root.
    let note = body["checkpoint"]["checkpoint"].as_str().unwrap();
    let origin = log::origin(STACK, &"acme".parse().unwrap()).unwrap();
    let checkpoint =
        open_checkpoint(note.as_bytes(), &origin, std::slice::from_ref(&api.key)).unwrap();
    let record = body["canonical_record"].as_str().unwrap();
    let leaf = Hash::leaf(record.as_bytes());
    assert_eq!(body["leaf_hash"], json!(leaf.to_base64()));
    assert_eq!(
        record.as_bytes(),
        stored[13].encode(),
        "the exact bytes the log holds"
    );
    let index = body["log_index"].as_u64().unwrap();
    assert_eq!((index, body["tree_size"].as_u64()), (13, Some(21)));
    let path = hashes(&body["inclusion_proof"]);
    merkle::verify_inclusion(index, checkpoint.size(), &leaf, &path, checkpoint.root()).unwrap();
    // The event shown is the event proved.
    let shown: AuditEvent = serde_json::from_value(body["event"].clone()).unwrap();
    assert_eq!(shown.encode(), record.as_bytes());
    // A changed record no longer leads to the signed root.
    let forged = record.replace("invoice.update", "invoice.delete");
    assert!(merkle::verify_inclusion(
        index,
        21,
        &Hash::leaf(forged.as_bytes()),
        &path,
        checkpoint.root()
    )
    .is_err());
    // The read is itself an access event.
    let access = api.access_log.events();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0].metadata.get("route"), Some(&json!("proof")));
    assert_eq!(access[0].resource_id.as_str(), "evt-13");
}

#[tokio::test]
async fn the_checkpoint_and_consistency_proofs_chain_a_clients_old_tree_to_the_new_one() {
    let api = Api::new().await;
    let (status, body) = api.get("/checkpoint", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let all = events(40);
    api.store(&all[..9]).await;
    api.checkpoint().await;
    let (_, old) = api.get("/checkpoint", "").await;
    api.store(&all[9..]).await;
    api.checkpoint().await;

    let (status, new) = api.get("/checkpoint", "").await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["tree_size"], json!(40));
    let leaves: Vec<Hash> = all.iter().map(AuditEvent::leaf_hash).collect();
    assert_eq!(new["root_hash"], json!(merkle::root(&leaves).to_base64()));
    let (status, body) = api.get("/consistency", "from=9").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["from"].as_u64(), body["to"].as_u64()),
        (Some(9), Some(40))
    );
    assert_eq!(body["checkpoint"], new);
    let old_root = Hash::parse_base64(old["root_hash"].as_str().unwrap()).unwrap();
    let new_root = Hash::parse_base64(new["root_hash"].as_str().unwrap()).unwrap();
    merkle::verify_consistency(
        9,
        40,
        &old_root,
        &new_root,
        &hashes(&body["consistency_proof"]),
    )
    .unwrap();
    // To an older signed size.
    let (status, body) = api.get("/consistency", "from=2&to=9").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checkpoint"]["tree_size"], json!(9));
    let reads: Vec<Value> = api
        .access_log
        .events()
        .iter()
        .map(|e| e.metadata.get("route").cloned().unwrap())
        .collect();
    assert_eq!(
        reads,
        [
            json!("checkpoint"),
            json!("checkpoint"),
            json!("checkpoint"),
            json!("consistency"),
            json!("consistency")
        ]
    );
}

#[tokio::test]
async fn bad_proof_requests_get_a_400_or_404_that_says_why_and_leak_nothing() {
    let api = Api::new().await;
    api.store(&events(5)).await;
    let (status, body) = api.get("/events/evt-1/proof", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_yet_checkpointed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("log index 1"),
        "{body}"
    );
    api.checkpoint().await;

    for (query, field) in [
        ("", "from"),
        ("from=0", "from"),
        ("from=-1", "from"),
        ("from=abc", "from"),
        ("from=99999999999999999999", "from"),
        ("from=3&to=2", "from"),
        ("from=1&to=4", "to"),
        ("from=6", "from"),
        ("from=1&from=2", "from"),
        ("from=1&size=2", "size"),
        ("from=1&tenant_id=globex", "tenant_id"),
    ] {
        let (status, body) = api.get("/consistency", query).await;
        assert!(status == 400 || status == 403, "{query}: {status} {body}");
        assert!(
            body["error"]["fields"].get(field).is_some(),
            "{query}: {body}"
        );
    }
    for path in [
        "/events/nope/proof",
        "/events/evt-1%2Fx/proof",
        "/events/%00/proof",
        &format!("/events/{}/proof", "x".repeat(10_000)),
    ] {
        let (status, body) = api.get(path, "").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], json!("not_found"));
    }
    // Another tenant's event is not found, exactly as one that does not exist.
    let globex = api.issuer.bearer("globex", &[Scope::EventsRead]);
    let (status, _) = api.get_as(&globex, "/events/evt-1/proof", "").await;
    assert_eq!(status, 404);
    let (status, body) = api.get_as(&globex, "/checkpoint", "").await;
    assert_eq!(status, 404, "{body}");
    // No token, no proof; a token without the read scope neither.
    let (status, _) = api.get_as("", "/checkpoint", "").await;
    assert_eq!(status, 401);
    let writer = api.issuer.bearer("acme", &[Scope::EventsWrite]);
    let (status, _) = api.get_as(&writer, "/events/evt-1/proof", "").await;
    assert_eq!(status, 403);
}
