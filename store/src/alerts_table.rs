//! The `alerts` table in the lake: each tenant's alerts (from the catalog, where they are kept and
//! changed) exported as one Parquet file, `alerts/tenant=<t>/alerts.parquet`, replaced atomically
//! whenever the tenant's alerts change. Analyst SQL sees it as `alerts` next to `events`, so alerts
//! join their evidence (`unnest(evidence)` = `events.event_id`); other engines read the file directly.

use crate::lake::LakeError;
use crate::{Store, StoreError};
use bytes::Bytes;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use schemas::alert::Alert;
use std::sync::Arc;

/// Where a tenant's alerts file lives in the lake.
pub fn alerts_dir(tenant: &str) -> String {
    format!("alerts/tenant={tenant}")
}

/// The `alerts` table's columns.
pub fn alerts_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let list =
        |n: &str| Field::new(n, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true);
    let ts = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true);
    Arc::new(Schema::new(vec![
        s("alert_id"),
        Field::new("level", DataType::Int64, true),
        ts("first_seen"),
        ts("last_seen"),
        Field::new("count", DataType::Int64, true),
        s("object"),
        s("description"),
        s("source"),
        s("rule_id"),
        s("rule_title"),
        s("status"),
        s("handling"),
        s("host_name"),
        s("host_group"),
        s("account"),
        s("file_path"),
        s("file_sha256"),
        list("techniques"),
        list("tactics"),
        list("evidence"),
        s("log_reason"),
        s("log_raw"),
        s("why"),
    ]))
}

/// The alerts as one Arrow batch.
pub fn alerts_batch(alerts: &[Alert]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&Alert) -> Option<String>| -> ArrayRef {
        Arc::new(alerts.iter().map(f).collect::<StringArray>())
    };
    let time = |f: &dyn Fn(&Alert) -> &str| -> ArrayRef {
        let v: Vec<Option<i64>> = alerts.iter().map(|a| schemas::time::parse_rfc3339_micros(f(a))).collect();
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    let list = |f: &dyn Fn(&Alert) -> Vec<String>| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for a in alerts {
            for v in f(a) {
                b.values().append_value(v);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|a| Some(a.id.clone())),
        Arc::new(Int64Array::from(alerts.iter().map(|a| i64::from(a.level)).collect::<Vec<_>>())),
        time(&|a| &a.first_seen),
        time(&|a| &a.last_seen),
        Arc::new(Int64Array::from(
            alerts.iter().map(|a| i64::try_from(a.count).unwrap_or(i64::MAX)).collect::<Vec<_>>(),
        )),
        text(&|a| Some(a.object.clone())),
        text(&|a| Some(a.description.clone())),
        text(&|a| Some(a.source.clone())),
        text(&|a| Some(a.rule.id.clone())),
        text(&|a| Some(a.rule.title.clone())),
        text(&|a| Some(status(a).to_owned())),
        text(&|a| Some(a.handling.as_str().to_owned())),
        text(&|a| Some(a.endpoint.name.clone())),
        text(&|a| a.endpoint.group.clone()),
        text(&|a| a.endpoint.account.clone()),
        text(&|a| a.file.path.clone()),
        text(&|a| a.file.sha256.clone()),
        list(&|a| a.techniques.iter().map(|t| t.id.clone()).collect()),
        list(&|a| a.tactics.clone()),
        list(&|a| a.evidence.clone()),
        text(&|a| a.log.as_ref().and_then(|l| l.reason.clone())),
        text(&|a| a.log.as_ref().and_then(|l| l.raw.clone())),
        text(&|a| Some(a.why.to_string())),
    ];
    RecordBatch::try_new(alerts_schema(), columns)
}

fn status(a: &Alert) -> &'static str {
    match a.status {
        schemas::alert::Status::Blocked => "blocked",
        schemas::alert::Status::Alerted => "alerted",
    }
}

impl Store {
    /// Writes `tenant`'s alerts to the lake's `alerts` table (one file, replaced atomically).
    /// Returns how many were written.
    pub async fn export_alerts(&self, tenant: &str) -> Result<usize, StoreError> {
        let filter = crate::catalog::AlertFilter { limit: usize::MAX >> 1, ..Default::default() };
        let alerts = self.catalog.alerts(tenant, &filter).await?;
        let n = alerts.len();
        let objects = self.lake.objects().clone();
        let rel = format!("{}/alerts.parquet", alerts_dir(tenant));
        self.cpu
            .run(move || -> Result<(), LakeError> {
                let batch = alerts_batch(&alerts).map_err(LakeError::Arrow)?;
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")))
                    .build();
                let pq = |source| LakeError::Parquet { path: rel.clone(), source };
                let mut buf = Vec::new();
                let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(pq)?;
                w.write(&batch).map_err(pq)?;
                w.close().map_err(pq)?;
                objects.put(&rel, Bytes::from(buf))?;
                Ok(())
            })
            .await??;
        Ok(n)
    }
}
