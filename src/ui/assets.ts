// The one stylesheet and the one script, served from memory: no build step for the UI.
export const appCss = `
:root { --fg:#1d2330; --muted:#5b6475; --bg:#f4f5f7; --card:#fff; --accent:#2f6f4f; --accent-dark:#24573e; --danger:#b3261e;
  --border:#dde1e7; --ok-bg:#e6f4ea; --ok-fg:#1e6b34; --ok-border:#b7dfc2; --err-bg:#fdecea; --err-border:#f5c2bd;
  --warn-bg:#fff6e0; --warn-fg:#7a5200; --warn-border:#f0d9a0; --grey-bg:#eceef2; }
* { box-sizing: border-box; }
[hidden] { display:none !important; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
a { color:var(--accent); }
.topbar { display:flex; align-items:center; gap:1.25rem; padding:0 1.25rem; min-height:3.2rem; background:#1f3b2d; color:#fff; flex-wrap:wrap; }
.topbar a.brand { color:#fff; font-weight:700; text-decoration:none; letter-spacing:.02em; font-size:1.1rem; }
.mainnav { display:flex; gap:.1rem; flex:1; flex-wrap:wrap; align-items:center; }
.mainnav > a, .mainnav summary { color:#d7e6dc; text-decoration:none; padding:.9rem .6rem; border-bottom:3px solid transparent; white-space:nowrap; cursor:pointer; }
.mainnav a:hover, .mainnav summary:hover { color:#fff; }
.mainnav > a.active, .mainnav details.active > summary { color:#fff; border-bottom-color:#8fd3a8; font-weight:600; }
.mainnav details.menu { position:relative; }
.mainnav .menu-items { position:absolute; top:100%; left:0; z-index:10; background:#fff; border:1px solid var(--border); border-radius:6px; min-width:14rem; box-shadow:0 4px 14px rgba(0,0,0,.15); padding:.3rem 0; }
.mainnav .menu-items a { display:block; color:var(--fg); padding:.5rem 1rem; text-decoration:none; white-space:nowrap; }
.mainnav .menu-items a:hover, .mainnav .menu-items a.active { background:#eef6f1; }
.account { display:flex; gap:1rem; align-items:center; margin-left:auto; white-space:nowrap; }
.account .who { color:#fff; opacity:.85; text-decoration:none; }
a:focus-visible, button:focus-visible, summary:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible { outline:3px solid #f0b429; outline-offset:2px; }
details.advanced { margin:.5rem 0; }
details.advanced > summary { cursor:pointer; color:var(--accent); font-weight:600; margin:.75rem 0 0; }
details.advanced > summary small { color:var(--muted); font-weight:400; }
.searchbox { display:flex; gap:.5rem; align-items:center; border:1px solid #c9cfd8; border-radius:6px; padding:.3rem .4rem; background:#fff; }
.searchbox input[type=text] { border:0; flex:1; min-width:8rem; padding:.3rem; }
.facet { display:inline-flex; gap:.4rem; align-items:center; background:var(--grey-bg); border:1px solid var(--border); border-radius:4px; padding:.1rem .5rem; font-weight:600; white-space:nowrap; }
.facet a { text-decoration:none; font-size:1.1rem; line-height:1; padding:0 .2rem; }
.module-grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:0 1.25rem; }
.mainnav .menu-items a.menu-switch { border-top:1px solid var(--border); margin-top:.3rem; }
.devmode { background:#f0b429; color:#1d2330 !important; padding:.1rem .5rem; border-radius:4px; font-size:.8rem; font-weight:600; text-decoration:none; }
main { max-width:1120px; margin:2rem auto; padding:0 1rem; }
.card { background:var(--card); border:1px solid var(--border); border-radius:8px; padding:1.5rem; margin-bottom:1.5rem; }
.narrow { max-width:440px; margin:3rem auto; }
.page-head { display:flex; justify-content:space-between; align-items:center; gap:1rem; margin-bottom:1rem; flex-wrap:wrap; }
.page-head h1 { margin:0; }
h1 { font-size:1.45rem; margin:0 0 1rem; }
h2 { font-size:1.1rem; margin:0 0 .75rem; }
h3 { font-size:1rem; margin:1.25rem 0 .5rem; }
label { display:block; font-weight:600; margin:.9rem 0 .3rem; }
label.check { display:flex; gap:.5rem; align-items:flex-start; font-weight:600; margin:.9rem 0 .3rem; }
label.check input { margin-top:.3rem; }
label.check.plain { font-weight:400; }
label.check small, .help { display:block; font-weight:400; color:var(--muted); font-size:.87rem; }
.help { margin:.25rem 0 0; }
input[type=text], input[type=password], input[type=email], input[type=number], input[type=date], select, textarea {
  width:100%; padding:.5rem .6rem; border:1px solid #c9cfd8; border-radius:6px; font:inherit; background:#fff; color:inherit; }
input:focus, select:focus, textarea:focus { outline:2px solid #8fd3a8; outline-offset:0; border-color:var(--accent); }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(220px, 1fr)); gap:0 1.25rem; }
fieldset { border:1px solid var(--border); border-radius:8px; padding:.5rem 1.25rem 1.25rem; margin:1.25rem 0 0; }
legend { font-weight:700; padding:0 .4rem; }
button, .button { display:inline-block; margin-top:1rem; padding:.5rem 1rem; border:1px solid var(--accent); border-radius:6px; background:var(--accent);
  color:#fff; font:inherit; font-weight:600; cursor:pointer; text-decoration:none; line-height:1.4; }
button:hover, .button:hover { background:var(--accent-dark); }
button.secondary, .button.secondary { background:#fff; color:var(--accent); }
button.secondary:hover, .button.secondary:hover { background:#eef6f1; }
button.danger { background:#fff; color:var(--danger); border-color:#e3a6a1; }
button.danger:hover { background:var(--err-bg); }
button.small { margin:0; padding:.2rem .6rem; font-size:.85rem; }
button.link { background:none; border:0; color:#fff; padding:0; margin:0; text-decoration:underline; font-weight:400; }
.actions { display:flex; gap:.5rem; flex-wrap:wrap; align-items:center; }
.actions button, .actions .button { margin-top:0; }
form.inline { display:inline; }
.flash { border-radius:6px; padding:.65rem .9rem; margin:0 0 1rem; border:1px solid; }
.flash-success { background:var(--ok-bg); color:var(--ok-fg); border-color:var(--ok-border); }
.flash-error, .error { background:var(--err-bg); color:var(--danger); border:1px solid var(--err-border); border-radius:6px; padding:.6rem .8rem; }
.flash-warning { background:var(--warn-bg); color:var(--warn-fg); border-color:var(--warn-border); }
.muted { color:var(--muted); }
.skip-link { position:absolute; left:-999px; top:0; background:#fff; color:var(--accent); padding:.5rem 1rem; z-index:20; }
.skip-link:focus { left:.5rem; top:.5rem; }
main:focus { outline:none; }
.visually-hidden { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
.error-text { color:var(--danger) !important; }
.tag { display:inline-block; padding:.15rem .6rem; border-radius:999px; font-size:.82rem; font-weight:600; white-space:nowrap; }
.tag-green { background:var(--ok-bg); color:var(--ok-fg); border:1px solid var(--ok-border); }
.tag-red { background:var(--err-bg); color:var(--danger); border:1px solid var(--err-border); }
.tag-grey { background:var(--grey-bg); color:var(--muted); border:1px solid var(--border); }
.tag-amber { background:var(--warn-bg); color:var(--warn-fg); border:1px solid var(--warn-border); }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.5rem .6rem; border-bottom:1px solid var(--border); vertical-align:top; }
th { font-size:.8rem; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); font-weight:600; }
tr:last-child td { border-bottom:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.nowrap { white-space:nowrap; }
td .sub { display:block; color:var(--muted); font-size:.85rem; }
.table-card { padding:0; overflow-x:auto; }
.table-card table th:first-child, .table-card table td:first-child { padding-left:1.25rem; }
code { background:#eef0f3; padding:.05rem .3rem; border-radius:4px; font-size:.9em; overflow-wrap:anywhere; }
.copyable { display:flex; gap:.5rem; align-items:center; flex-wrap:wrap; }
.copyable code { padding:.4rem .6rem; font-size:.95rem; }
.copyable button { margin:0; }
.filters { display:flex; gap:1rem; align-items:flex-end; flex-wrap:wrap; }
.filters label { margin-top:0; }
.filters select { width:auto; min-width:10rem; }
.pager { margin-top:1rem; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.35rem 1rem; margin:.5rem 0 0; }
dl.facts dt { color:var(--muted); }
dl.facts dd { margin:0; }
.form-actions { margin-top:1.5rem; }
h2.section { margin-top:1.75rem; }
th.value-col { width:38%; }
.filters button { margin-top:0; }
ol.steps { padding-left:1.2rem; margin:0; }
ol.steps li { margin:.5rem 0; }
pre.mail-text { white-space:pre-wrap; overflow-wrap:anywhere; font:14px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; margin:0; }
iframe.mail-html { width:100%; height:28rem; border:1px solid var(--border); border-radius:6px; background:#fff; resize:vertical; }
ul.attachments { margin:0; padding-left:1.2rem; }
ul.attachments li { margin:.3rem 0; }
tr.current td { background:#eef6f1; }
ul.explanation { margin:.5rem 0 0; padding-left:1.2rem; }
ul.explanation li { margin:.25rem 0; }
textarea { font:inherit; }
form.reset input[type=password] { width:9rem; display:inline-block; padding:.2rem .4rem; }
`;

// Progressive enhancement only: every page works without it (the server renders what a save would show).
export const appJs = `
(function () {
  function targets(el, attr) {
    return (el.getAttribute(attr) || '').split(' ').filter(Boolean).map(function (id) { return document.getElementById(id); }).filter(Boolean);
  }
  // A control inside a hidden section counts as off (the auth select under a ticked "Outlook"); document
  // order makes outer switches settle before the controls they hide.
  function syncAll() {
    document.querySelectorAll('[data-reveal],[data-conceal]').forEach(function (el) {
      var on = !el.closest('[hidden]') && (el.type === 'checkbox' ? el.checked : el.value === el.getAttribute('data-when'));
      targets(el, 'data-reveal').forEach(function (t) { t.hidden = !on; });
      targets(el, 'data-conceal').forEach(function (t) { t.hidden = on; });
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('[data-reveal],[data-conceal]').forEach(function (el) {
      el.addEventListener('change', syncAll);
    });
    syncAll();
    // Outlook ticked: the host fields fold into a closed "Advanced" part holding Microsoft's defaults (filled
    // in when a server becomes Outlook here); unticked, they are open for the relay's own.
    document.querySelectorAll('[data-advanced]').forEach(function (box) {
      var details = document.getElementById(box.getAttribute('data-advanced'));
      if (!details) return;
      box.addEventListener('change', function () {
        details.open = !box.checked;
        var summary = details.querySelector('summary');
        if (summary) summary.hidden = !box.checked;
        if (box.checked && !box.defaultChecked) {
          ['host', 'port', 'security'].forEach(function (k) {
            var field = details.querySelector('[name="' + k + '"]');
            if (field) field.value = details.getAttribute('data-preset-' + k);
          });
        }
      });
    });
    // Archive and other steps that stop something: asked first (the server refuses nothing without it).
    document.querySelectorAll('[data-confirm]').forEach(function (button) {
      button.addEventListener('click', function (event) {
        if (!window.confirm(button.getAttribute('data-confirm'))) event.preventDefault();
      });
    });
    // Compose: the chosen files travel as base64 in one hidden field (the form posts urlencoded, like the others).
    document.querySelectorAll('form[data-attachments]').forEach(function (form) {
      form.addEventListener('submit', function (event) {
        var input = form.querySelector('input[type=file]');
        var target = document.getElementById(form.getAttribute('data-attachments'));
        if (!input || !target || !input.files || input.files.length === 0 || target.value) return;
        event.preventDefault();
        Promise.all(Array.prototype.map.call(input.files, function (file) {
          return new Promise(function (resolve, reject) {
            var reader = new FileReader();
            reader.onload = function () { resolve({ filename: file.name, contentType: file.type || 'application/octet-stream', contentBase64: String(reader.result).split(',')[1] || '' }); };
            reader.onerror = reject;
            reader.readAsDataURL(file);
          });
        })).then(function (list) {
          target.value = JSON.stringify(list);
          form.submit();
        });
      });
    });
    document.querySelectorAll('[data-copy]').forEach(function (button) {
      button.hidden = !navigator.clipboard;
      button.addEventListener('click', function () {
        var source = document.getElementById(button.getAttribute('data-copy'));
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          button.textContent = 'Copied';
          setTimeout(function () { button.textContent = 'Copy'; }, 1500);
        });
      });
    });
  });
})();
`;

/** A juniper sprig on the brand green; served at /favicon.ico, where browsers look for it. */
export const faviconSvg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f3b2d"/><path d="M16 5 L24 20 H8 Z" fill="#8fd3a8"/><circle cx="16" cy="22" r="4" fill="#5b7fbf"/><rect x="15" y="24" width="2" height="4" fill="#d7e6dc"/></svg>`;
