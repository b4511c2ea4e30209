// The automation form: show the chosen action's fieldset, what the chosen event type watches (a registered model
// and, for alias events, an alias filter; or a project and collection), a preset's payload on request, and only the
// chosen job's versions and the chosen project's collections. Without JavaScript every field stays visible.
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
    // data-watch: event type -> the fields saying what it watches (the form's watch_fields); the others hide.
    function showScope() {
        const watch = JSON.parse(eventType.dataset.watch || "{}");
        const shown = watch[eventType.value] || ["registered_model"];
        ["registered_model", "alias_regex", "project", "collection"].forEach((name) => {
            const el = row(name);
            if (el) el.hidden = !shown.includes(name);
        });
    }
    if (action) { action.addEventListener("change", showAction); showAction(); }
    if (eventType) { eventType.addEventListener("change", showScope); showScope(); }

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

    // Offer only the options of `child` whose data-<key> is the chosen `parent`; a choice left hidden becomes the
    // first one offered (a job's version is needed) or none (no collection: all of the project's).
    function offerChildrenOf(parent, child, key, pickFirst) {
        if (!parent || !child) return;
        const filter = function () {
            let firstVisible = null;
            Array.from(child.options).forEach((option) => {
                if (!option.value) return;
                option.hidden = option.dataset[key] !== parent.value;
                if (!option.hidden && firstVisible === null) firstVisible = option;
            });
            const chosen = child.selectedOptions[0];
            if (chosen && chosen.value && chosen.hidden) child.value = pickFirst && firstVisible ? firstVisible.value : "";
        };
        parent.addEventListener("change", filter);
        filter();
    }
    offerChildrenOf(byName("job"), byName("job_version"), "job", true);
    offerChildrenOf(byName("project"), byName("collection"), "project", false);
});
