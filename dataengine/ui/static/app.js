// The review app's only script: accept / reject and export go through the JSON API, then the page reloads from it.
async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify(body), credentials: "same-origin"});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(data.detail || response.statusText); }
  return data;
}
function reviewer() {
  const field = document.getElementById("reviewer");
  if (field && field.value.trim()) { localStorage.setItem("reviewer", field.value.trim()); return field.value.trim(); }
  return null;
}
document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("reviewer");
  if (field && localStorage.getItem("reviewer")) { field.value = localStorage.getItem("reviewer"); }
  document.querySelectorAll("button[data-decision]").forEach(button => button.addEventListener("click", async () => {
    const card = button.closest("[data-image]");
    const status = card.querySelector(".status");
    try {
      const result = await post(`/api/selections/${button.dataset.selection}/images/${card.dataset.image}/decision`,
                                {decision: button.dataset.decision, by: reviewer()});
      card.classList.remove("accepted", "rejected");
      card.classList.add(result.decision);
      card.querySelectorAll("button[data-decision]").forEach(b => b.classList.toggle("on", b === button));
      status.textContent = `${result.decision} by ${result.by}`;
      status.dataset.state = result.decision;
      // The counts and the export button follow the selection as the API now has it.
      const now = await (await fetch(`/api/selections/${button.dataset.selection}`, {credentials: "same-origin"})).json();
      const counts = document.getElementById("counts");
      if (counts) {
        counts.textContent = `${now.counts.images} images · ${now.counts.accepted} accepted · ${now.counts.rejected} rejected`;
      }
      const exporter = document.getElementById("export");
      if (exporter && exporter.dataset.night) {
        const n = now.night.only_accepted ? now.counts.accepted : now.counts.images - now.counts.rejected;
        exporter.textContent = `Export the night: ${n} image${n === 1 ? "" : "s"}`;
      } else if (exporter) { exporter.textContent = `Export the ${now.counts.images - now.counts.rejected} images not rejected`; }
    } catch (error) { status.textContent = error.message; status.dataset.state = "error"; }
  }));
  const exporter = document.getElementById("export");
  if (exporter) {
    exporter.addEventListener("click", async () => {
      const out = document.getElementById("export-result");
      exporter.disabled = true;
      out.textContent = "exporting…";
      try {
        let result;
        if (exporter.dataset.night) {  // a held night ships to its own target, with its own options
          result = await post(`/api/nights/${exporter.dataset.night}/export`, {by: reviewer()});
          const status = document.getElementById("night-status");
          if (status) { status.textContent = result.night.status.replace("_", " "); status.className = `badge ${result.night.status}`; }
          if (!result.batch_id) { out.textContent = "every image was rejected: the night ended without a batch"; return; }
        } else {
          const only = document.getElementById("only-accepted");
          result = await post(`/api/selections/${exporter.dataset.selection}/export`,
                              {only_accepted: Boolean(only && only.checked)});
        }
        const link = Object.assign(document.createElement("a"), {id: "batch-link", href: `/batches/${result.batch_id}`,
                                                                  textContent: result.batch_id});
        out.replaceChildren("exported as ", link, ` (${result.counts.images} images) to ${result.location}`);
      } catch (error) { out.textContent = error.message; exporter.disabled = false; }
    });
  }
});
