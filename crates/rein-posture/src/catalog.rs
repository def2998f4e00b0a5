//! The control catalog: framework controls that findings map to, shipped inside the binary.
//!
//! `controls.toml` beside this crate's `Cargo.toml` is a copy of `../shared/controls.toml` of the
//! Rein project specification (its first line says when it was copied). It is embedded with
//! `include_str!`, so the posture report names and explains controls offline.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::PostureError;

/// The catalog text embedded in the binary.
pub const EMBEDDED_CATALOG: &str = include_str!("../controls.toml");

/// One control (a risk, category, subcategory, layer or threat) of one framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The framework, e.g. `OWASP Non-Human Identities Top 10 (2025)`.
    pub framework: String,
    /// The control ID as the framework writes it, e.g. `NHI5:2025`, `ASI03`, `PR.AA-05`.
    pub id: String,
    /// Its title (see `title_kind` for whether it is the framework's own).
    pub title: String,
    /// A one-sentence summary in the catalog's own words.
    #[serde(default)]
    pub summary: String,
    /// `official`, `descriptive` or `category`.
    pub title_kind: String,
    /// A caveat about the ID or title, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    control: Vec<Control>,
}

/// The controls findings map to, looked up by ID.
#[derive(Debug, Clone)]
pub struct Catalog {
    controls: Vec<Control>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    /// The catalog embedded in the binary ([`EMBEDDED_CATALOG`]).
    pub fn embedded() -> Result<Self, PostureError> {
        Self::parse(EMBEDDED_CATALOG)
    }

    /// Parses a catalog in the `controls.toml` format. Control IDs must be unique.
    pub fn parse(text: &str) -> Result<Self, PostureError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| PostureError::Catalog(e.to_string()))?;
        let mut by_id = HashMap::with_capacity(file.control.len());
        for (i, c) in file.control.iter().enumerate() {
            if by_id.insert(c.id.clone(), i).is_some() {
                return Err(PostureError::Catalog(format!(
                    "control `{}` is listed twice",
                    c.id
                )));
            }
        }
        Ok(Self {
            controls: file.control,
            by_id,
        })
    }

    /// Every control, in catalog order.
    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    /// The control with this ID.
    pub fn get(&self, id: &str) -> Option<&Control> {
        self.by_id.get(id).and_then(|&i| self.controls.get(i))
    }

    /// The framework of the control with this ID.
    pub fn framework_of(&self, id: &str) -> Option<&str> {
        self.get(id).map(|c| c.framework.as_str())
    }
}
