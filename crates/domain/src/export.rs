//! Report exports: what is exported, in which format, filtered how, and the
//! life of an export row.

use crate::{BatchStatus, NameSearch, ParseError, SkuPrefix};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    Batches,
    Products,
}

impl ExportKind {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "batches" => Ok(Self::Batches),
            "products" => Ok(Self::Products),
            _ => Err(ParseError::new("kind", "batches or products")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batches => "batches",
            Self::Products => "products",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "csv" => Ok(Self::Csv),
            "jsonl" => Ok(Self::Jsonl),
            _ => Err(ParseError::new("format", "csv or jsonl")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    /// The file extension, which is also the format's name.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/jsonl; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Succeeded once; its file was removed after `EXPORT_RETENTION_DAYS`.
    Expired,
    /// Succeeded once; the storage reconciliation found its file gone.
    Missing,
}

impl ExportStatus {
    pub const ALL: [Self; 6] =
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Expired, Self::Missing];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or(ParseError::new("status", "queued, running, succeeded, failed, expired or missing"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Missing => "missing",
        }
    }

    /// A finished export is never run again, whatever is redelivered.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Expired | Self::Missing)
    }
}

/// The filters of `GET /v1/batches` and of an export of batches.
/// `produced_from` is inclusive, `produced_to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFilters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BatchStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_to: Option<DateTime<Utc>>,
}

/// The filters of `GET /v1/products` and of an export of products.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductFilters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_prefix: Option<SkuPrefix>,
    /// Case-insensitive substring of the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<NameSearch>,
}

/// An export's filters, which depend on its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFilters {
    Batches(BatchFilters),
    Products(ProductFilters),
}

impl ExportFilters {
    pub fn kind(&self) -> ExportKind {
        match self {
            Self::Batches(_) => ExportKind::Batches,
            Self::Products(_) => ExportKind::Products,
        }
    }

    /// How the filters are stored (`exports.filters`) and shown.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Batches(filters) => serde_json::to_value(filters),
            Self::Products(filters) => serde_json::to_value(filters),
        };
        // Plain structs of strings always serialize.
        value.unwrap_or_else(|_| serde_json::json!({}))
    }

    /// Reads stored filters back; an error means the row was written by
    /// something other than this code.
    pub fn from_json(kind: ExportKind, value: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ExportKind::Batches => Self::Batches(serde_json::from_value(value)?),
            ExportKind::Products => Self::Products(serde_json::from_value(value)?),
        })
    }
}

/// What an organization's schedule exports each time it fires: the body of
/// `POST /v1/exports`, kept as the schedule's payload in the same form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub format: ExportFormat,
    pub filters: ExportFilters,
}

impl ExportSpec {
    pub fn kind(&self) -> ExportKind {
        self.filters.kind()
    }

    /// `{"kind", "format", "filters"}`, as stored and shown.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind().as_str(),
            "format": self.format.as_str(),
            "filters": self.filters.to_json(),
        })
    }

    /// Reads a stored payload back; an error means the row was written by
    /// something other than this code.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
        let kind = ExportKind::parse(text("kind")).map_err(|error| error.to_string())?;
        let format = ExportFormat::parse(text("format")).map_err(|error| error.to_string())?;
        let filters = value.get("filters").cloned().unwrap_or_else(|| serde_json::json!({}));
        let filters = ExportFilters::from_json(kind, filters).map_err(|error| format!("filters: {error}"))?;
        Ok(Self { format, filters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_their_stored_form() {
        let filters = ExportFilters::Batches(BatchFilters {
            product_id: Some(Uuid::nil()),
            status: Some(BatchStatus::Completed),
            produced_from: Some(DateTime::UNIX_EPOCH),
            produced_to: None,
        });
        let json = filters.to_json();
        assert_eq!(json["status"], "completed");
        assert!(json.get("produced_to").is_none());
        assert_eq!(ExportFilters::from_json(ExportKind::Batches, json).unwrap(), filters);
    }

    #[test]
    fn an_export_spec_round_trips_through_a_schedule_payload() {
        let spec = ExportSpec {
            format: ExportFormat::Jsonl,
            filters: ExportFilters::Batches(BatchFilters { status: Some(BatchStatus::Planned), ..Default::default() }),
        };
        let json = spec.to_json();
        assert_eq!(json, serde_json::json!({"kind": "batches", "format": "jsonl", "filters": {"status": "planned"}}));
        assert_eq!(ExportSpec::from_json(&json).unwrap(), spec);
        assert!(ExportSpec::from_json(&serde_json::json!({"kind": "batches", "format": "xml"})).is_err());
    }

    #[test]
    fn filters_of_another_kind_are_refused() {
        let json = serde_json::json!({"sku_prefix": "AB"});
        assert!(ExportFilters::from_json(ExportKind::Batches, json.clone()).is_err());
        let products = ExportFilters::from_json(ExportKind::Products, json).unwrap();
        assert_eq!(products.kind(), ExportKind::Products);
    }

    #[test]
    fn a_stored_sku_prefix_is_parsed_again() {
        let json = serde_json::json!({"sku_prefix": "no spaces"});
        assert!(ExportFilters::from_json(ExportKind::Products, json).is_err());
    }

    #[test]
    fn only_terminal_states_are_finished() {
        let finished: Vec<_> = ExportStatus::ALL.into_iter().filter(|s| s.is_finished()).collect();
        assert_eq!(
            finished,
            [ExportStatus::Succeeded, ExportStatus::Failed, ExportStatus::Expired, ExportStatus::Missing]
        );
        for status in ExportStatus::ALL {
            assert_eq!(ExportStatus::parse(status.as_str()), Ok(status));
        }
    }
}
