//! `Opcode`: the one place where operation numbers are defined (§5).
//!
//! This file owns the numbering and each opcode's direction; it does not know body layouts
//! (see `request.rs` and `response.rs`). `wire/PROTOCOL.md` repeats the table and a test keeps
//! the two in step.

/// Which side sends an opcode, as this codec and our server use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: a request the server accepts (decoded by [`crate::Request`]).
    ClientToServer,
    /// Server to client: a reply or a push (decoded by [`crate::Response`]).
    ServerToClient,
}

macro_rules! opcodes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, $dir:ident; )*) => {
        /// An operation number of protocol v1 (§5). Cluster-internal numbers are not included.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Opcode {
            $( $(#[$doc])* $name = $num, )*
        }

        impl Opcode {
            /// Every opcode, in numeric table order of §5.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$name, )* ];

            /// The opcode for a wire byte, or `None` for a number this protocol does not assign.
            #[inline]
            pub const fn from_u8(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $num => Some(Opcode::$name), )*
                    _ => None,
                }
            }

            /// The name used in the specification, e.g. `"EnqueueResult"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Opcode::$name => stringify!($name), )*
                }
            }

            /// Which side sends this opcode.
            pub const fn direction(self) -> Direction {
                match self {
                    $( Opcode::$name => Direction::$dir, )*
                }
            }
        }
    };
}

opcodes! {
    /// First frame of a connection (§8.1).
    Handshake = 0x01, ClientToServer;
    /// Successful handshake reply (§8.2).
    HandshakeOk = 0x02, ServerToClient;
    /// Liveness probe; answered with Pong.
    Ping = 0x03, ClientToServer;
    /// Reply to Ping.
    Pong = 0x04, ServerToClient;
    /// The client is leaving; the server closes without a reply.
    Disconnect = 0x05, ClientToServer;
    /// Batch of messages to enqueue (§9.1).
    Enqueue = 0x10, ClientToServer;
    /// One result per enqueued message (§9.1).
    EnqueueResult = 0x11, ServerToClient;
    /// Start a subscription (§9.2).
    Consume = 0x12, ClientToServer;
    /// The subscription is registered (§9.2).
    ConsumeOk = 0x13, ServerToClient;
    /// Pushed messages of a subscription (§9.3).
    Delivery = 0x14, ServerToClient;
    /// End a subscription; no reply (§9.4).
    CancelConsume = 0x15, ClientToServer;
    /// Batch of acknowledgements (§9.5).
    Ack = 0x16, ClientToServer;
    /// One code per ack item (§9.5).
    AckResult = 0x17, ServerToClient;
    /// Batch of negative acknowledgements (§9.6).
    Nack = 0x18, ClientToServer;
    /// One code per nack item (§9.6).
    NackResult = 0x19, ServerToClient;
    /// Reply to GetAcl (§11.5).
    GetAclResult = 0xE4, ServerToClient;
    /// Read a key's permissions (§11.5).
    GetAcl = 0xE5, ClientToServer;
    /// Reply to SetAcl (§11.4).
    SetAclResult = 0xE6, ServerToClient;
    /// Replace a key's permissions (§11.4).
    SetAcl = 0xE7, ClientToServer;
    /// Reply to ListApiKeys (§11.3).
    ListApiKeysResult = 0xE8, ServerToClient;
    /// List API keys (§11.3).
    ListApiKeys = 0xE9, ClientToServer;
    /// Reply to RevokeApiKey (§11.2).
    RevokeApiKeyResult = 0xEA, ServerToClient;
    /// Revoke an API key (§11.2).
    RevokeApiKey = 0xEB, ClientToServer;
    /// Reply to CreateApiKey (§11.1).
    CreateApiKeyResult = 0xEC, ServerToClient;
    /// Create an API key (§11.1).
    CreateApiKey = 0xED, ClientToServer;
    /// Reply to Redrive (§10.8).
    RedriveResult = 0xEE, ServerToClient;
    /// Move messages from a dead-letter queue back to its parent (§10.8).
    Redrive = 0xEF, ClientToServer;
    /// Reply to ListConfig (§10.7).
    ListConfigResult = 0xF0, ServerToClient;
    /// List runtime configuration entries by prefix (§10.7).
    ListConfig = 0xF1, ClientToServer;
    /// Reply to GetConfig (§10.6).
    GetConfigResult = 0xF2, ServerToClient;
    /// Read one runtime configuration value (§10.6).
    GetConfig = 0xF3, ClientToServer;
    /// Reply to SetConfig (§10.5).
    SetConfigResult = 0xF4, ServerToClient;
    /// Set or delete one runtime configuration value (§10.5).
    SetConfig = 0xF5, ClientToServer;
    /// Reply to ListQueues (§10.4).
    ListQueuesResult = 0xF6, ServerToClient;
    /// List all queues (§10.4).
    ListQueues = 0xF7, ClientToServer;
    /// Reply to GetStats (§10.3).
    GetStatsResult = 0xF8, ServerToClient;
    /// Statistics of one queue (§10.3).
    GetStats = 0xF9, ClientToServer;
    /// Reply to DeleteQueue (§10.2).
    DeleteQueueResult = 0xFA, ServerToClient;
    /// Delete a queue (§10.2).
    DeleteQueue = 0xFB, ClientToServer;
    /// Reply to CreateQueue (§10.1).
    CreateQueueResult = 0xFC, ServerToClient;
    /// Create a queue (§10.1).
    CreateQueue = 0xFD, ClientToServer;
    /// Whole-request failure (§8.3).
    Error = 0xFE, ServerToClient;
    /// Extension: dry-run a Lua hook against a described message (`fila lua test`).
    LuaTest = 0xC0, ClientToServer;
    /// Extension: the decision of a dry run, or why there is none.
    LuaTestResult = 0xC1, ServerToClient;
}

impl Opcode {
    /// The wire byte.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// True for numbers reserved for cluster-internal operations (`0x40`–`0x5F`, §5.5).
    pub const fn is_cluster_reserved(byte: u8) -> bool {
        matches!(byte, 0x40..=0x5F)
    }

    /// True for numbers this project may assign to protocol extensions (`0xC0`–`0xCF`).
    pub const fn is_extension_range(byte: u8) -> bool {
        matches!(byte, 0xC0..=0xCF)
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.as_u8()
    }
}

impl std::fmt::Display for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(0x{:02X})", self.name(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_back_to_itself() {
        let mut assigned = 0;
        let mut extensions = 0;
        for byte in 0..=u8::MAX {
            if let Some(op) = Opcode::from_u8(byte) {
                assert_eq!(op.as_u8(), byte);
                assert!(!Opcode::is_cluster_reserved(byte), "{op} in cluster range");
                assigned += 1;
                extensions += usize::from(Opcode::is_extension_range(byte));
            }
        }
        assert_eq!(assigned, Opcode::ALL.len());
        assert_eq!(assigned - extensions, 42, "the opcodes of §5");
        assert_eq!(extensions, 2, "LuaTest and LuaTestResult");
    }

    #[test]
    fn hot_path_uses_code_numbering() {
        // §17 item 1: the code numbering, not the prose one.
        assert_eq!(Opcode::ConsumeOk.as_u8(), 0x13);
        assert_eq!(Opcode::Delivery.as_u8(), 0x14);
        assert_eq!(Opcode::CancelConsume.as_u8(), 0x15);
        assert_eq!(Opcode::Ack.as_u8(), 0x16);
        assert_eq!(Opcode::NackResult.as_u8(), 0x19);
    }
}
