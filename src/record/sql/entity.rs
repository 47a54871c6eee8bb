//! sea-orm entities of the audit tables (see `migrations/` for the schema itself).
//!
//! Ids are UUIDs in their hyphenated text form and JSON columns hold objects, so the same
//! queries work on SQLite and PostgreSQL.

/// `aibridge_interceptions`: one row per bridged client request.
pub mod interception {
    use sea_orm::entity::prelude::*;

    /// One interception.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "aibridge_interceptions")]
    pub struct Model {
        /// UUIDv7, as sent to the client in `x-aibridge-interception-id`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The actor id.
        pub initiator_id: String,
        /// Provider kind (`anthropic`, `openai`).
        pub provider: String,
        /// Configured provider name.
        pub provider_name: String,
        /// Wire API (`messages`, `chat_completions`, `responses`).
        pub api: String,
        /// Requested model.
        pub model: String,
        /// Detected client.
        pub client: String,
        /// The client's `User-Agent`.
        #[sea_orm(column_type = "Text", nullable)]
        pub user_agent: Option<String>,
        /// The client's session id.
        pub client_session_id: Option<String>,
        /// `centralized` or `byok`.
        pub credential_kind: String,
        /// Masked credential hint.
        pub credential_hint: Option<String>,
        /// Whether the client asked for a stream.
        pub streaming: bool,
        /// When the request arrived.
        pub started_at: DateTimeUtc,
        /// When it ended, once it has.
        pub ended_at: Option<DateTimeUtc>,
        /// How it ended (`completed`, `upstream_error`, …).
        pub outcome: Option<String>,
        /// Last upstream HTTP status.
        pub upstream_status: Option<i32>,
        /// Upstream attempts, retries included.
        pub attempts: Option<i32>,
        /// The interception record's metadata (actor metadata, …).
        #[sea_orm(column_type = "JsonBinary")]
        pub metadata: Json,
        /// The end record's metadata (error detail, tool-loop iterations, …).
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub ended_metadata: Option<Json>,
    }

    /// Children are queried by `interception_id`; no relation traversal is needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `aibridge_token_usages`: token counts of each upstream response.
pub mod token_usage {
    use sea_orm::entity::prelude::*;

    /// One token usage.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "aibridge_token_usages")]
    pub struct Model {
        /// Record id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The interception.
        pub interception_id: String,
        /// The provider's response id.
        pub provider_response_id: String,
        /// Uncached input tokens.
        pub input_tokens: i64,
        /// Output tokens.
        pub output_tokens: i64,
        /// Input tokens read from the prompt cache.
        pub cache_read_input_tokens: i64,
        /// Input tokens written to the prompt cache.
        pub cache_write_input_tokens: i64,
        /// Other token counts by name.
        #[sea_orm(column_type = "JsonBinary")]
        pub metadata: Json,
        /// When the usage was observed.
        pub created_at: DateTimeUtc,
    }

    /// No relation traversal is needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `aibridge_user_prompts`: the user's prompt of each interception.
pub mod user_prompt {
    use sea_orm::entity::prelude::*;

    /// One prompt.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "aibridge_user_prompts")]
    pub struct Model {
        /// Record id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The interception.
        pub interception_id: String,
        /// The provider's response id, once known (empty before).
        pub provider_response_id: String,
        /// The prompt text.
        #[sea_orm(column_type = "Text")]
        pub prompt: String,
        /// Extra detail.
        #[sea_orm(column_type = "JsonBinary")]
        pub metadata: Json,
        /// When the prompt was observed.
        pub created_at: DateTimeUtc,
    }

    /// No relation traversal is needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `aibridge_tool_usages`: tool calls, client tools and injected MCP tools.
pub mod tool_usage {
    use sea_orm::entity::prelude::*;

    /// One tool call.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "aibridge_tool_usages")]
    pub struct Model {
        /// Record id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The interception.
        pub interception_id: String,
        /// The provider's response id that contained the call.
        pub provider_response_id: String,
        /// The provider's id of the call.
        pub provider_tool_call_id: Option<String>,
        /// For injected tools, the MCP server's URL.
        #[sea_orm(column_type = "Text", nullable)]
        pub server_url: Option<String>,
        /// The tool's name as the model saw it.
        pub tool: String,
        /// The arguments.
        #[sea_orm(column_type = "JsonBinary")]
        pub input: Json,
        /// Whether the bridge injected and ran the tool.
        pub injected: bool,
        /// Why an injected call failed.
        #[sea_orm(column_type = "Text", nullable)]
        pub invocation_error: Option<String>,
        /// Extra detail.
        #[sea_orm(column_type = "JsonBinary")]
        pub metadata: Json,
        /// When the call was observed.
        pub created_at: DateTimeUtc,
    }

    /// No relation traversal is needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `aibridge_model_thoughts`: thinking blocks, reasoning summaries and commentary.
pub mod model_thought {
    use sea_orm::entity::prelude::*;

    /// One thought.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "aibridge_model_thoughts")]
    pub struct Model {
        /// Record id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The interception.
        pub interception_id: String,
        /// The thought's text.
        #[sea_orm(column_type = "Text")]
        pub content: String,
        /// Extra detail; `source` says where the thought came from.
        #[sea_orm(column_type = "JsonBinary")]
        pub metadata: Json,
        /// When the thought was observed.
        pub created_at: DateTimeUtc,
    }

    /// No relation traversal is needed.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
