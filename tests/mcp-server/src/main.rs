//! `aibridge-test-mcp [--http ADDR] [--page-size N] [--tool NAME]…`: the test MCP server.
//!
//! Serves over stdio by default; with `--http 127.0.0.1:0` it serves streamable HTTP and
//! prints its URL on stdout.

use std::net::SocketAddr;

use test_mcp::Options;

fn usage() -> ! {
    eprintln!("usage: aibridge-test-mcp [--http ADDR] [--page-size N] [--tool NAME]...");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options::default();
    let mut http: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--http" => http = Some(value.parse()?),
            "--page-size" => options.page_size = value.parse()?,
            "--tool" => options.extra_tools.push(value),
            _ => usage(),
        }
    }
    match http {
        Some(addr) => {
            let server = test_mcp::serve_http(addr, options).await?;
            println!("{}", server.url());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        None => test_mcp::serve_stdio(options).await,
    }
}
