//! `ErrorCode`: the stable, wire-visible status byte of §6.
//!
//! This file owns the code numbers and their names; it does not decide which internal error
//! maps to which code (that mapping lives in the server's dispatch). `wire/PROTOCOL.md`
//! repeats the table and a test keeps the two in step.

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal; )*) => {
        /// A status code used in Error frames and in result bodies (§6).
        ///
        /// Decoding maps any byte this table does not know to [`ErrorCode::InternalError`],
        /// as every reference decoder does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];

            /// The code for a wire byte; unknown bytes become `InternalError`.
            #[inline]
            pub const fn from_u8(byte: u8) -> ErrorCode {
                match byte {
                    $( $num => ErrorCode::$name, )*
                    _ => ErrorCode::InternalError,
                }
            }

            /// True when `byte` is one of the codes of §6.
            pub const fn is_known(byte: u8) -> bool {
                matches!(byte, $( $num )|*)
            }

            /// The name used in the specification, e.g. `"QueueNotFound"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => stringify!($name), )*
                }
            }
        }
    };
}

error_codes! {
    /// Success.
    Ok = 0x00;
    /// The named queue does not exist.
    QueueNotFound = 0x01;
    /// No lease for that message in that queue.
    MessageNotFound = 0x02;
    /// Create of an existing queue name.
    QueueAlreadyExists = 0x03;
    /// A hook script failed to compile.
    LuaCompilationError = 0x04;
    /// The storage engine failed.
    StorageError = 0x05;
    /// Redrive on a queue that is not a dead-letter queue.
    NotADLQ = 0x06;
    /// Redrive whose parent queue is gone.
    ParentQueueNotFound = 0x07;
    /// Bad configuration value, or unknown ACL permission kind.
    InvalidConfigValue = 0x08;
    /// The broker is overloaded.
    ChannelFull = 0x09;
    /// Missing, unknown or expired API key (handshake only).
    Unauthorized = 0x0A;
    /// The key lacks the permission.
    Forbidden = 0x0B;
    /// Cluster: this node does not lead the queue.
    NotLeader = 0x0C;
    /// Handshake version is not 1.
    UnsupportedVersion = 0x0D;
    /// Undecodable body, or opcode not accepted.
    InvalidFrame = 0x0E;
    /// No API key with that id.
    ApiKeyNotFound = 0x0F;
    /// Cluster node not ready (never emitted by the reference server).
    NodeNotReady = 0x10;
    /// Anything else; also what unknown codes decode to.
    InternalError = 0xFF;
}

impl ErrorCode {
    /// The wire byte.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl From<ErrorCode> for u8 {
    fn from(code: ErrorCode) -> u8 {
        code.as_u8()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_round_trip_and_unknown_become_internal_error() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            let code = ErrorCode::from_u8(byte);
            if ErrorCode::is_known(byte) {
                assert_eq!(code.as_u8(), byte);
                known += 1;
            } else {
                assert_eq!(code, ErrorCode::InternalError, "byte {byte:#04x}");
            }
        }
        assert_eq!(known, ErrorCode::ALL.len());
        assert_eq!(known, 18);
    }
}
