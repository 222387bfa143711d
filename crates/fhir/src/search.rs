//! Typed search parameters: each resource type gets the parameters we use for it.

use std::{fmt, marker::PhantomData};

use chrono::NaiveDate;

use crate::model::{
    Appointment, AppointmentId, AppointmentStatus, Encounter, PatientId, PractitionerId,
};

/// The comparison of a FHIR date search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    /// `eq`: within the day.
    Eq,
    /// `gt`: after.
    Gt,
    /// `ge`: on or after.
    Ge,
    /// `lt`: before.
    Lt,
    /// `le`: on or before.
    Le,
}

impl DatePrefix {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }
}

/// Search parameters for resources of type `R`, in order (a name may repeat, e.g. two `date`s
/// for a range).
pub struct SearchQuery<R> {
    params: Vec<(String, String)>,
    kind: PhantomData<fn() -> R>,
}

impl<R> SearchQuery<R> {
    /// No parameters.
    pub fn new() -> Self {
        Self {
            params: Vec::new(),
            kind: PhantomData,
        }
    }

    /// Adds any parameter (for those without a typed method).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The parameters.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The parameters as a URL query string (`a=1&b=2`, form-encoded), as `If-None-Exist` wants.
    pub fn to_query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.params)
            .finish()
    }
}

impl SearchQuery<Appointment> {
    /// `patient=<id>`.
    pub fn patient(self, id: &PatientId) -> Self {
        self.param("patient", id.as_str())
    }

    /// `practitioner=<id>`.
    pub fn practitioner(self, id: &PractitionerId) -> Self {
        self.param("practitioner", id.as_str())
    }

    /// `date=<prefix><yyyy-mm-dd>`; call twice for a range.
    pub fn date(self, prefix: DatePrefix, date: NaiveDate) -> Self {
        self.param(
            "date",
            format!("{}{}", prefix.as_str(), date.format("%Y-%m-%d")),
        )
    }

    /// `status=<code>`.
    pub fn status(self, status: &AppointmentStatus) -> Self {
        self.param("status", status.as_str())
    }
}

impl SearchQuery<Encounter> {
    /// `appointment=<id>`: the encounter of an appointment.
    pub fn appointment(self, id: &AppointmentId) -> Self {
        self.param("appointment", id.as_str())
    }

    /// `patient=<id>`.
    pub fn patient(self, id: &PatientId) -> Self {
        self.param("patient", id.as_str())
    }
}

impl<R> Default for SearchQuery<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for SearchQuery<R> {
    fn clone(&self) -> Self {
        Self {
            params: self.params.clone(),
            kind: PhantomData,
        }
    }
}

impl<R> fmt::Debug for SearchQuery<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SearchQuery").field(&self.params).finish()
    }
}
