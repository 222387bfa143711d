//! FHIR codes as enums that keep unknown codes (`Other`) instead of failing the document.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a code enum: known codes as variants, anything else in `Other(String)`.
macro_rules! fhir_code {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code outside the value set, kept as sent.
            Other(String),
        }

        impl $name {
            /// The code as written in FHIR JSON.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Other(code) => code,
                }
            }
        }

        impl From<&str> for $name {
            fn from(code: &str) -> Self {
                match code {
                    $( $text => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = String::deserialize(deserializer)?;
                Ok(Self::from(code.as_str()))
            }
        }
    };
}

fhir_code! {
    /// `Appointment.status`.
    AppointmentStatus {
        /// `proposed`
        Proposed = "proposed",
        /// `pending`
        Pending = "pending",
        /// `booked`
        Booked = "booked",
        /// `arrived`
        Arrived = "arrived",
        /// `fulfilled`
        Fulfilled = "fulfilled",
        /// `cancelled`
        Cancelled = "cancelled",
        /// `noshow`
        Noshow = "noshow",
        /// `entered-in-error`
        EnteredInError = "entered-in-error",
        /// `checked-in`
        CheckedIn = "checked-in",
        /// `waitlist`
        Waitlist = "waitlist",
    }
}

fhir_code! {
    /// `Appointment.participant.status`.
    ParticipationStatus {
        /// `accepted`
        Accepted = "accepted",
        /// `declined`
        Declined = "declined",
        /// `tentative`
        Tentative = "tentative",
        /// `needs-action`
        NeedsAction = "needs-action",
    }
}

fhir_code! {
    /// `Encounter.status`.
    EncounterStatus {
        /// `planned`
        Planned = "planned",
        /// `arrived`
        Arrived = "arrived",
        /// `triaged`
        Triaged = "triaged",
        /// `in-progress`
        InProgress = "in-progress",
        /// `onleave`
        Onleave = "onleave",
        /// `finished`
        Finished = "finished",
        /// `cancelled`
        Cancelled = "cancelled",
        /// `entered-in-error`
        EnteredInError = "entered-in-error",
        /// `unknown`
        Unknown = "unknown",
    }
}

fhir_code! {
    /// `OperationOutcome.issue.severity`.
    IssueSeverity {
        /// `fatal`
        Fatal = "fatal",
        /// `error`
        Error = "error",
        /// `warning`
        Warning = "warning",
        /// `information`
        Information = "information",
    }
}

fhir_code! {
    /// `AuditEvent.action`.
    AuditEventAction {
        /// `C`: create.
        Create = "C",
        /// `R`: read.
        Read = "R",
        /// `U`: update.
        Update = "U",
        /// `D`: delete.
        Delete = "D",
        /// `E`: execute (what a connect or disconnect is).
        Execute = "E",
    }
}

fhir_code! {
    /// `AuditEvent.outcome`.
    AuditEventOutcome {
        /// `0`: success.
        Success = "0",
        /// `4`: minor failure.
        MinorFailure = "4",
        /// `8`: serious failure.
        SeriousFailure = "8",
        /// `12`: major failure.
        MajorFailure = "12",
    }
}

fhir_code! {
    /// `Communication.status`.
    CommunicationStatus {
        /// `preparation`
        Preparation = "preparation",
        /// `in-progress`
        InProgress = "in-progress",
        /// `not-done`
        NotDone = "not-done",
        /// `on-hold`
        OnHold = "on-hold",
        /// `stopped`
        Stopped = "stopped",
        /// `completed`
        Completed = "completed",
        /// `entered-in-error`
        EnteredInError = "entered-in-error",
        /// `unknown`
        Unknown = "unknown",
    }
}
