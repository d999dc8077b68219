//! Registrar (being written).
/// Registrar (being written).
pub struct Registrar;
/// Registrar settings (being written).
pub struct RegistrarConfig;
