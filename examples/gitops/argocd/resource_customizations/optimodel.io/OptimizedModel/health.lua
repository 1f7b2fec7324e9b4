-- Health of an optimodel.io OptimizedModel for Argo CD, read from the conditions the operator writes
-- (kstatus conventions: Ready, Reconciling, Stalled). Uses only base Lua: Argo CD opens no string
-- library for custom checks.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.observedGeneration == nil or generation == nil
    or status.observedGeneration ~= generation then
  -- A new resource reads observedGeneration -1 (the CRD's default) until the operator has judged it;
  -- a changed spec is not judged before observedGeneration catches up.
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to judge generation " .. tostring(generation)
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message
elseif ready ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the operator's conditions"
end
return hs
