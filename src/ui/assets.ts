// The one stylesheet, served from memory: no build step for the UI.
export const appCss = `
:root { --fg:#1d2330; --muted:#5b6475; --bg:#f5f6f8; --card:#fff; --accent:#2f6f4f; --danger:#b3261e; --border:#dde1e7; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
.topbar { display:flex; justify-content:space-between; align-items:center; padding:.6rem 1.5rem; background:#1f3b2d; color:#fff; }
.topbar a.brand { color:#fff; font-weight:700; text-decoration:none; letter-spacing:.02em; }
.topbar nav { display:flex; gap:1rem; align-items:center; }
.topbar .who { opacity:.85; }
main { max-width:960px; margin:2rem auto; padding:0 1rem; }
.card { background:var(--card); border:1px solid var(--border); border-radius:8px; padding:1.5rem; margin-bottom:1.5rem; }
.narrow { max-width:420px; margin:3rem auto; }
h1 { font-size:1.4rem; margin:0 0 1rem; }
h2 { font-size:1.1rem; margin:0 0 .75rem; }
label { display:block; font-weight:600; margin:.75rem 0 .25rem; }
input[type=text], input[type=password], input[type=email] { width:100%; padding:.5rem .6rem; border:1px solid var(--border); border-radius:6px; font:inherit; }
button { margin-top:1rem; padding:.5rem 1rem; border:0; border-radius:6px; background:var(--accent); color:#fff; font:inherit; cursor:pointer; }
button.link { background:none; color:#fff; padding:0; margin:0; text-decoration:underline; }
form.inline { display:inline; }
.error { background:#fdecea; color:var(--danger); border:1px solid #f5c2bd; border-radius:6px; padding:.6rem .8rem; }
.muted { color:var(--muted); }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.4rem .5rem; border-bottom:1px solid var(--border); vertical-align:top; }
code { background:#eef0f3; padding:.05rem .3rem; border-radius:4px; }
`;
