// Written by collector/dashboard/build.mjs (`npm run build`): do not edit.

/// The HTML shell of the page.
pub const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    etag: "\"7a84df1745d0e95b8d4b207632253e24\"",
    body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/index.html")),
    gzip: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/index.html.gz")),
};

/// The page's script and stylesheet, by content-hashed name.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "app-5327QWHH.css",
        content_type: "text/css; charset=utf-8",
        etag: "\"eb479d1c4896afa610b6678f35bbf8fe\"",
        body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/assets/app-5327QWHH.css")),
        gzip: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/assets/app-5327QWHH.css.gz")),
    },
    Asset {
        name: "app-EI3XMO35.js",
        content_type: "text/javascript; charset=utf-8",
        etag: "\"5a4ed05b9bba27e3c854b4e37b510db7\"",
        body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/assets/app-EI3XMO35.js")),
        gzip: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dist/assets/app-EI3XMO35.js.gz")),
    },
];
