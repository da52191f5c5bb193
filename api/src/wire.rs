//! How values cross the API boundary: times are RFC 3339 strings (Cordon keeps microseconds inside),
//! events are nested ECS ([`schemas::Record::to_ecs_json`]).

use serde_json::Value;

/// A time, as RFC 3339.
pub(crate) fn time(us: i64) -> Value {
    Value::String(schemas::time::format_micros(us))
}

/// A time that may be unset: RFC 3339 or null.
pub(crate) fn time_opt(us: Option<i64>) -> Value {
    us.map_or(Value::Null, time)
}
