from agent.quick import main

main()
