use std::io::IsTerminal;
use stockflow_config::{LogFormat, TelemetrySettings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber for a service: logs go to stdout, as JSON
/// lines or pretty text. Calling it twice (as tests do) keeps the first.
pub fn init(settings: &TelemetrySettings) {
    install(settings, std::io::stdout, std::io::stdout().is_terminal());
}

/// The same for admin commands, whose stdout carries their result.
pub fn init_stderr(settings: &TelemetrySettings) {
    install(settings, std::io::stderr, std::io::stderr().is_terminal());
}

/// Colours only on a terminal: in a log file they are noise.
fn install<W>(settings: &TelemetrySettings, writer: W, colour: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::new(settings.filter.as_str());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(colour);
    let result = match settings.format {
        // The whole span list, not only the innermost span: the request id
        // sits on the outer request span, and a handler's own span would
        // otherwise hide it.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // Err means a subscriber is already installed, which is fine.
    drop(result);
}
