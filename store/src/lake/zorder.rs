//! Z-order for compaction: rows ordered by their (host rank, time) keys with the bits interleaved,
//! so both host and time ranges prune in the merged file.

use crate::convert::str_at;
use datafusion::arrow::array::{Array, ArrayRef, TimestampMicrosecondArray};
use datafusion::arrow::compute::concat;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use schemas::fields::col;

/// The Z-order of the rows of several batches together, as (batch, row) pairs: only the host and
/// time columns are concatenated, so the rows can be gathered an output slice at a time.
pub fn zorder_across(batches: &[RecordBatch]) -> Result<Vec<(usize, usize)>, ArrowError> {
    let column = |c: usize| -> Result<ArrayRef, ArrowError> {
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
        concat(&parts)
    };
    let (hosts, times) = (column(col::HOST_NAME)?, column(col::TIME)?);
    let mut starts = Vec::with_capacity(batches.len());
    let mut at = 0usize;
    for b in batches {
        starts.push(at);
        at += b.num_rows();
    }
    Ok(zorder_of(hosts.as_ref(), times.as_ref())
        .into_iter()
        .map(|i| {
            let i = i as usize;
            let batch = starts.partition_point(|&s| s <= i) - 1;
            (batch, i - starts[batch])
        })
        .collect())
}

/// Row indices in Z-order over (host rank, time): the two keys scaled to 32 bits each and their
/// bits interleaved, host bit first. Ties keep time order.
fn zorder_of(host: &dyn Array, time: &dyn Array) -> Vec<u32> {
    let n = host.len();
    let hosts: Vec<Option<String>> = (0..n).map(|i| str_at(host, i)).collect();
    let times = time
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .map(|a| (0..n).map(|i| if a.is_null(i) { 0 } else { a.value(i) }).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![0; n]);
    let mut distinct: Vec<&Option<String>> = hosts.iter().collect();
    distinct.sort();
    distinct.dedup();
    let scale = |v: u64, span: u64| -> u32 {
        if span == 0 { 0 } else { ((u128::from(v) * u128::from(u32::MAX)) / u128::from(span)) as u32 }
    };
    let host_span = distinct.len().saturating_sub(1) as u64;
    let (t_lo, t_hi) = times.iter().fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    let t_span = t_hi.abs_diff(t_lo);
    let keys: Vec<u64> = (0..n)
        .map(|i| {
            let rank = distinct.binary_search(&&hosts[i]).unwrap_or(0) as u64;
            interleave(scale(rank, host_span), scale(times[i].abs_diff(t_lo), t_span))
        })
        .collect();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.sort_by_key(|&i| (keys[i as usize], times[i as usize]));
    idx
}

/// Interleaves the bits of `hi` and `lo`, `hi`'s bit above `lo`'s at every position.
fn interleave(hi: u32, lo: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut x = u64::from(v);
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        x = (x | (x << 1)) & 0x5555_5555_5555_5555;
        x
    }
    (spread(hi) << 1) | spread(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::records_to_batch;
    use schemas::record::Record;

    #[test]
    fn interleave_puts_host_bits_above_time_bits() {
        assert_eq!(interleave(0, 0), 0);
        assert_eq!(interleave(0, 1), 0b01);
        assert_eq!(interleave(1, 0), 0b10);
        assert_eq!(interleave(u32::MAX, 0), 0xAAAA_AAAA_AAAA_AAAA);
        assert_eq!(interleave(0, u32::MAX), 0x5555_5555_5555_5555);
        assert_eq!(interleave(0b11, 0b01), 0b1011);
    }

    #[test]
    fn zorder_clusters_hosts_and_keeps_time_order_within_a_cell() {
        use schemas::Cell;
        use schemas::fields::col;
        let mut recs = Vec::new();
        for h in 0..4 {
            for t in 0..64i64 {
                let mut rec = Record::default();
                rec.set(col::EVENT_ID, Cell::Str(format!("{h}-{t}")));
                rec.set(col::TENANT, Cell::Str("t".into()));
                rec.set(col::AGENT_ID, Cell::Str("a".into()));
                rec.set(col::HOST_NAME, Cell::Str(format!("host-{h}")));
                rec.set(col::TIME, Cell::Time(1_000_000 * (63 - t)));
                recs.push(rec);
            }
        }
        let batch = records_to_batch(&recs).unwrap();
        let idx: Vec<u32> = zorder_across(&[batch]).unwrap().into_iter().map(|(_, row)| row as u32).collect();
        assert_eq!(idx.len(), recs.len());
        let mut seen = idx.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..recs.len() as u32).collect::<Vec<_>>(), "a permutation");
        // The first quarter of the output covers the earliest half of time for the first two hosts:
        // Z-order alternates between the keys rather than sorting by one.
        let first: Vec<&Record> = idx[..64].iter().map(|&i| &recs[i as usize]).collect();
        assert!(first.iter().all(|r| r.host() == "host-0" || r.host() == "host-1"));
        assert!(first.iter().any(|r| r.host() == "host-0") && first.iter().any(|r| r.host() == "host-1"));
        assert!(first.iter().all(|r| r.time() < 32 * 1_000_000));
    }
}
