//! Hostile bytes for what the viewer reads of outside input: a request's target, Host header and
//! query string, and the profiles it draws (see `contprof_engine::hostile`).

use contprof_engine::hostile::{hostile, sample_profile};

#[test]
fn profiles_drawn_as_flame_trees() {
    let gz = contprof_engine::profile::encode_to_vec(&sample_profile());
    hostile("pprof profile drawn", &[gz], |b| {
        if let Ok(p) = contprof_engine::profile::decode(b) {
            let mut tree = crate::FlameTree::new(1);
            tree.add(0, &p);
        }
    });
}

#[test]
fn http_request_targets_hosts_and_queries() {
    // hyper parses the head; what the viewer reads of it is the target, the Host header and the query.
    let valid = vec![
        b"/compare?base=20250101T120000.123456Z-0123456789&head=x&group=bin%2Fapp&format=json\nlocalhost:7878".to_vec(),
        b"/?commit=ab&tag=service%3Dapi&limit=50\n[::1]:7878".to_vec(),
    ];
    hostile("HTTP request target and Host", &valid, |b| {
        let (target, host) = b.split_at(b.iter().position(|&c| c == b'\n').unwrap_or(b.len()));
        let request = hyper::Request::builder()
            .uri(target)
            .header(hyper::header::HOST, host.get(1..).unwrap_or_default())
            .body(());
        if let Ok(request) = request
            && let Ok(r) = crate::http::Request::new(&request.into_parts().0, false)
        {
            let _ = crate::server::is_loopback_host(r.host.as_deref().unwrap_or(""));
            let _ = crate::query::decode(&r.query);
        }
    });
}
