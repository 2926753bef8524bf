//! Group-committed batches of different workers may share rows (a job delivered twice, a
//! report repeated): they take their locks in one order, so two batches holding the same
//! keys in opposite orders wait for each other and both succeed, where Postgres would
//! otherwise detect a deadlock and fail one of them.
mod common;

use common::{Deployment, TestApp};
use entities::outbound::{Settlement, settle_many};
use entities::record::{RecordBatch, RecordItem, Slot, record_many};
use entities::status::{MessageRef, StatusReport, apply_many};
use entities::types::{Channel, Direction, MessageStatus, Provider, UserType};
use serde_json::json;

const CLIENTS: i64 = 300;

fn request(request_id: &str) -> RecordBatch {
    let item = |client_id: i64| RecordItem {
        message_id: None,
        client_id,
        wl_user_id: None,
        from: None,
        to: format!("+1415{:07}", 2_000_000 + client_id),
        subject: None,
        body: format!("hello {client_id}"),
        cc: vec![],
        bcc: vec![],
        attachments: json!([]),
        status: MessageStatus::Queued,
        provider_message_id: None,
        metadata: json!({}),
        scheduled_at: None,
    };
    RecordBatch {
        business_id: 1,
        request_id: request_id.into(),
        channel: Channel::Sms,
        direction: Direction::Outbound,
        category: None,
        notification_type: None,
        staff_id: None,
        provider: None,
        sent_by: None,
        sender_type: UserType::Staff,
        sent_at: None,
        location_id: None,
        items: (1..=CLIENTS).map(item).collect(),
    }
}

fn reversed<T: Clone>(items: &[T]) -> Vec<T> {
    items.iter().rev().cloned().collect()
}

async fn opposite_orders(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard_directly(1).await;
    // Clients and conversations exist first, so the batches below meet at the messages.
    let setup = request("setup");
    record_many(&app.db, &Slot::all(&setup)).await.unwrap();

    const ROUNDS: i64 = 4;
    for round in 0..ROUNDS {
        // The same request slots, recorded by two batches at once (a job delivered twice).
        let batch = request(&format!("round-{round}"));
        let forward = Slot::all(&batch);
        let backward = reversed(&forward);
        let (a, b) = tokio::join!(
            record_many(&app.db, &forward),
            record_many(&app.db, &backward)
        );
        let a = a.expect("recording forward");
        let b = b.expect("recording backward");
        let ids: Vec<i64> = a.iter().map(|r| r.as_ref().unwrap().message.id).collect();
        let mut again: Vec<i64> = b.iter().map(|r| r.as_ref().unwrap().message.id).collect();
        again.reverse();
        assert_eq!(ids, again, "both batches found the same messages");

        // Their answers settled twice, in opposite orders.
        let settlements: Vec<Settlement> = ids
            .iter()
            .map(|&id| {
                let pid = format!("SMbatch{id}");
                Settlement::sent(id, Provider::Sandbox, pid, MessageStatus::Sent, "+1415")
            })
            .collect();
        let backward = reversed(&settlements);
        let (a, b) = tokio::join!(
            settle_many(&app.db, &settlements),
            settle_many(&app.db, &backward)
        );
        a.expect("settling forward");
        b.expect("settling backward");

        // The same delivery reports applied by two batches, in opposite orders.
        let reports: Vec<StatusReport> = ids
            .iter()
            .map(|&message_id| StatusReport {
                message: MessageRef::Id {
                    business_id: 1,
                    message_id,
                },
                status: Some(MessageStatus::Delivered),
                error_code: None,
                error_message: None,
                occurred_at: chrono::Utc::now(),
                source: "test".into(),
                dedupe_key: "test:delivered".into(),
                opt_out: None,
            })
            .collect();
        let forward: Vec<&StatusReport> = reports.iter().collect();
        let backward = reversed(&forward);
        let (a, b) = tokio::join!(
            apply_many(&app.db, &forward),
            apply_many(&app.db, &backward)
        );
        a.expect("applying forward");
        b.expect("applying backward");
    }
    let sent = CLIENTS * ROUNDS;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
            .await,
        sent
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM message_events WHERE source = 'test'")
            .await,
        sent,
        "each report kept once"
    );
}

both_deployments!(opposite_orders, opposite_orders);
