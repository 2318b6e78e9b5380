//! Tests against a real S3-compatible server: moto's server mode, started on a free loopback port.
//! Without `moto_server` on PATH they are skipped loudly, unless `CONTPROF_REQUIRE_S3` is set (CI),
//! in which case they fail.

use super::tests::{Server, local_server_options, start_server};
use super::tests_remote::{self as remote, Remote, Running};
use super::*;

/// Starts moto on `port`, or returns `None` (after saying so) when it is not installed and not required.
fn start_moto(port: u16) -> Option<Server> {
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
    start_server(
        Path::new("moto_server"),
        port,
        &args,
        "CONTPROF_REQUIRE_S3",
        "install it with `pip install 'moto[server]'`",
    )
}

/// Creates a bucket with a bare HTTP request (moto does not check signatures).
fn create_bucket(port: u16, bucket: &str) {
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    remote::send_until_ok(port, &request);
}

fn options(port: u16) -> StoreOptions {
    let config = [
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "testing".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ];
    local_server_options(config.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

static S3: Remote = Remote {
    scheme: "s3",
    start: |port| start_moto(port).map(|s| Box::new(s) as Running),
    make_bucket: create_bucket,
    options,
};

#[test]
fn s3_write_list_read_back_and_version_check() {
    remote::write_list_read_back_and_version_check(&S3);
}

#[test]
fn s3_two_concurrent_writers() {
    remote::two_concurrent_writers(&S3);
}

#[test]
fn s3_retention() {
    remote::retention(&S3);
}

#[test]
fn s3_server_gone_mid_write() {
    remote::server_gone_mid_write(&S3);
}

#[test]
fn unreachable_store_is_a_clear_error() {
    remote::unreachable_store_is_a_clear_error(&S3);
}

#[test]
fn a_window_lease_is_won_once_and_windows_round_trip_on_s3() {
    remote::a_window_lease_is_won_once_and_windows_round_trip(&S3);
}
