// The automation form: show the chosen action's fieldset, alias filters only for alias events, a preset's
// payload on request, and only the chosen job's versions. Without JavaScript every field stays visible.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("automation_form");
    if (!form) return;
    const byName = (name) => form.querySelector('[name="' + name + '"]');
    const row = (name) => form.querySelector(".field-" + name);
    const action = byName("action_type");
    const eventType = byName("event_type");

    function showAction() {
        form.querySelectorAll("fieldset.action-webhook").forEach((el) => { el.hidden = action.value !== "WEBHOOK"; });
        form.querySelectorAll("fieldset.action-launch").forEach((el) => { el.hidden = action.value !== "LAUNCH_JOB"; });
    }
    function showAliasFilter() {
        const aliasRow = row("alias_regex");
        if (aliasRow) aliasRow.hidden = eventType.value !== "ADD_ARTIFACT_ALIAS";
    }
    if (action) { action.addEventListener("change", showAction); showAction(); }
    if (eventType) { eventType.addEventListener("change", showAliasFilter); showAliasFilter(); }

    const preset = byName("preset");
    const payload = byName("payload");
    if (preset && payload) {
        const presets = JSON.parse(preset.dataset.presets || "{}");
        preset.addEventListener("change", function () {
            if (!presets[preset.value]) return;
            const current = payload.value.trim();
            if (current && current !== "{}" && current !== "null" && !window.confirm("Replace the payload with the preset?")) return;
            payload.value = JSON.stringify(presets[preset.value], null, 2);
        });
    }

    const job = byName("job");
    const version = byName("job_version");
    if (job && version) {
        const filterVersions = function () {
            let firstVisible = null;
            Array.from(version.options).forEach((option) => {
                if (!option.value) return;
                option.hidden = option.dataset.job !== job.value;
                if (!option.hidden && firstVisible === null) firstVisible = option;
            });
            const chosen = version.selectedOptions[0];
            if (chosen && chosen.value && chosen.hidden) version.value = firstVisible ? firstVisible.value : "";
        };
        job.addEventListener("change", filterVersions);
        filterVersions();
    }
});
