// @ts-check
/**
 * The relevancy methods the viewer knows, in display order (medviz_core.types.METHODS).
 * A session may compute fewer; its start frame lists which.
 */

export const METHODS_ORDER = ["raw", "layer_weighted", "head_importance", "flow", "rollout", "consensus"];
