# Builds and runs a consumer project against dx. Run with cmake -P and:
#   MODE=install : install dx from BUILD_DIR into a fresh prefix, find_package it from there
#   MODE=subdir  : add dx's SOURCE_DIR to the consumer with add_subdirectory
#   WORK_DIR, SOURCE_DIR, BUILD_DIR, [LAUNCHER]
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message("${out}")
endfunction()

set(extra "")
if(LAUNCHER)
  list(APPEND extra "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()

if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/consumer" -B "${WORK_DIR}/build"
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${extra})
elseif(MODE STREQUAL "subdir")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/subdir_consumer" -B "${WORK_DIR}/build"
      -DDX_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release ${extra})
else()
  message(FATAL_ERROR "MODE must be install or subdir")
endif()
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j 2)
run("${WORK_DIR}/build/consumer")
