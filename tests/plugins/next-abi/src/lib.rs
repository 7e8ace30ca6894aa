//! A library built for a future plugin ABI: it exports the version symbol with major 2 (and no
//! `migrated_plugin_v1` table).

/// What a plugin of ABI 2.0 exports.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub static migrated_plugin_abi: migrated_plugin_api::AbiVersion =
    migrated_plugin_api::AbiVersion { major: 2, minor: 0 };
